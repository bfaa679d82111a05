"""The audit trail: append-only, hash-chained records of what was built, deployed and rolled back."""
