"""The log side: tailing pod log files, pipeline stages, positions and log outputs.

    tail.py           FileTail (rotation, truncation, deletion) and the pipeline Entry
    positions.py      the positions file (offset + file identity), written atomically
    stages.py         promtail's pipeline stages
    timefmt.py        Go layouts and named formats of the timestamp stage
    gotemplate.py     the Go text/template subset of the template and replace stages
    config.py         promtail-compatible YAML config with file:line errors
    agent.py          the agent loop: discover files, read, process, batch, send, store
                      positions; `clymene promtail` (run_promtail), /ready and /metrics
    loki.py           Loki push client (snappy protobuf or JSON), retries and backoff
    loki_pb.py        logproto.PushRequest encoded and decoded by hand
    kafka.py          Kafka output (topic clymene-logs) and a Loki-only log ingester
    ingester.py       `clymene promtail-ingester`: Kafka -> Loki and Elasticsearch, a
                      consumer group per backend, commit after write, DLQ
    elasticsearch.py  Elasticsearch output (clymene-logs-YYYY.MM.DD, one document per line)
    push.py           decoding Loki push requests, for a gateway's /loki/api/v1/push

No Celery here: the agent is a plain process.
"""
