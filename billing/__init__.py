"""Accounts, API keys, the credit ledger and quotas. Imports only `app.core`."""
