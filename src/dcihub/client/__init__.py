"""dcihub.client: the programme (SP-MIS) side of the DCI standard — see docs/client.md.

    from dcihub.client import Q, RegistryClient

    crvs = RegistryClient.from_demo("crvs", demo_json_path="dcihub-demo/demo.json")
    person = crvs.search(Q.id("UIN", "8462951730")).first

Modules: `settings` (ClientSettings), `query` (Q), `results` (typed results), `errors`
(the exception hierarchy), `core` (requests planned and sealed, without I/O) and `envelopes`
(replies and callbacks opened, without I/O), shared by everything; `base`, `sync`
(RegistryClient), `aio` (AsyncRegistryClient), `receiver` (CallbackReceiver), `pending`
(Pending), `keys`, `tokens`. Imports only `dcihub.standard` and `dcihub.security`.
"""

from .aio import AsyncRegistryClient
from .errors import (
    AuthenticationError,
    CallbackTimeout,
    ConfigurationError,
    DCIClientError,
    DecryptionError,
    ErrAckError,
    HTTPStatusError,
    ProtocolError,
    RejectedError,
    RequestTimeout,
    SignatureVerificationError,
    TransportError,
)
from .keys import OwnKeys
from .pending import Pending
from .query import Q, Query
from .receiver import CallbackReceiver, ReceiverAuth, RunningReceiver
from .results import (
    Ack,
    BatchResult,
    CallResult,
    DisabledAnswer,
    EnrolledAnswer,
    EnrollmentUpdatesResult,
    Identifier,
    ItemStatus,
    Name,
    Notification,
    NotifyEvent,
    Record,
    SearchResult,
    SubscribeItem,
    SubscribeResult,
    Subscription,
    TxnStatusResult,
    UnsubscribeResult,
)
from .settings import ClientSettings
from .sync import RegistryClient

__all__ = [
    "RegistryClient",
    "AsyncRegistryClient",
    "ClientSettings",
    "CallbackReceiver",
    "ReceiverAuth",
    "RunningReceiver",
    "Pending",
    "OwnKeys",
    "Q",
    "Query",
    # results
    "Ack",
    "BatchResult",
    "CallResult",
    "DisabledAnswer",
    "EnrolledAnswer",
    "EnrollmentUpdatesResult",
    "Identifier",
    "ItemStatus",
    "Name",
    "Notification",
    "NotifyEvent",
    "Record",
    "SearchResult",
    "SubscribeItem",
    "SubscribeResult",
    "Subscription",
    "TxnStatusResult",
    "UnsubscribeResult",
    # errors
    "DCIClientError",
    "ConfigurationError",
    "TransportError",
    "RequestTimeout",
    "HTTPStatusError",
    "AuthenticationError",
    "ErrAckError",
    "RejectedError",
    "SignatureVerificationError",
    "DecryptionError",
    "ProtocolError",
    "CallbackTimeout",
]
