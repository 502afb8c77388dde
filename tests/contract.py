"""The contract validator, for the tests: it lives in `dcihub.conformance.contract` (the
conformance kit validates against the official contracts with it too)."""

from dcihub.conformance.contract import *  # noqa: F403
from dcihub.conformance.contract import (  # noqa: F401
    CORE_APIS,
    FORMAT_CHECKER,
    PATCHES,
    REGISTRIES,
    Contract,
    ContractError,
    ContractLoadError,
    is_rfc3339_date_time,
    load_contract,
    load_core_contract,
)
