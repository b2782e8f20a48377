"""Asset search: embedding spaces, the pgvector store, indexing and queries."""
