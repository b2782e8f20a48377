"""Signed webhooks: endpoints, the outbox of task changes, Standard Webhooks signatures, delivery with retries."""
