"""HTTP receivers (remote write) in front of Kafka or the storages."""
