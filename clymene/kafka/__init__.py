"""Kafka: publishing batches, and the ingester that drains them into the databases."""
