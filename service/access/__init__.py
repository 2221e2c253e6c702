"""Who may do what, and what is kept of it: keys and roles, client addresses, lock-out, refused
requests, the audit trail and retention, with the CLIs that manage them."""
