"""Flags of `clymene gateway` (the original's gateway served HTTP on :15611)."""

from __future__ import annotations

from clymene.flags import Flag, parse_bool, parse_bytes, parse_duration

FLAGS: tuple[Flag, ...] = (
    Flag("--gateway.http-server.host-port", "gateway_http_host_port", ":15611",
         "Address of the gateway's HTTP server (remote write, /api/metrics, /metrics)."),
    Flag("--gateway.http-server.tls.enabled", "gateway_tls_enabled", "false",
         "Serve HTTPS.", parse_bool),
    Flag("--gateway.http-server.tls.cert", "gateway_tls_cert", "", "Server certificate file."),
    Flag("--gateway.http-server.tls.key", "gateway_tls_key", "", "Server key file."),
    Flag("--gateway.http-server.tls.client-ca", "gateway_tls_client_ca", "",
         "Require client certificates signed by this CA."),
    Flag("--gateway.max-body-size", "gateway_max_body_size", "16MiB",
         "Largest request body (compressed, and again uncompressed); larger is 413.",
         parse_bytes),
    Flag("--gateway.write-timeout", "gateway_write_timeout", "10s",
         "How long a request waits for its data to be safe (acknowledged by Kafka or "
         "written) before it is answered 503 and the sender retries.", parse_duration),
    Flag("--gateway.auth.bearer-token-file", "gateway_bearer_token_file", "",
         "Require `Authorization: Bearer <token>` with the token in this file."),
    Flag("--gateway.auth.basic.username", "gateway_basic_username", "",
         "Require HTTP basic auth with this user (and --gateway.auth.basic.password-file)."),
    Flag("--gateway.auth.basic.password-file", "gateway_basic_password_file", "",
         "File holding the basic auth password."),
)
