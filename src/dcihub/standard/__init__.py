"""The DCI standard as code: envelope, messages, acks, reason codes, queries, code
directories and one profile per registry. Pure: no HTTP, no database, no clock reads except
where a function takes `now` explicitly."""
