"""spotler-bridge: Spotler Message (API v3) webhooks into Kafka, Kafka commands out to the API."""

__version__ = "0.1.0"
