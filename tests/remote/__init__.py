"""Stores on object storage, against a real S3 server (moto) that the tests start on loopback."""
