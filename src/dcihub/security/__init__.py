"""security layer of dcihub: keys, signatures, encryption, tokens, partners (DIGEST §4).

Pure library code (no HTTP server, no database); the server's inbound pipeline and outbound
sender call it.

- `keys`        KeyManager: our key pairs as JWK files (0600), JWKS, rotation with overlap
- `canonical`   RFC 8785 (JCS) bytes of {"header", "message"}
- `signatures`  sign / verify / detect_profile: jws-detached (default), jws-compact, http-sig-ed25519
- `jwe`         encrypt_message / decrypt_message: the spec's EncryptedMessage (flattened JWE)
- `tokens`      client secret hashing, TokenIssuer (access tokens, scopes), ClientTokenCache
- `partners`    Partner, PartnerRegistry (YAML), JwksResolver (partner keys by kid)
- `callbacks`   check_sender_uri, resolve_and_check (SSRF defence for callbacks)
- `minimise`    keep only the record fields a partner may receive
- `errors`      SecurityError and subclasses, carrying `err.*` code, message and HTTP status
"""
