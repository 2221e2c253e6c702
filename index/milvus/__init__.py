"""The Milvus store: one collection shared by every service replica (schema, rows, writes, paging,
search, quoting, id claims, recovery from an outage)."""
