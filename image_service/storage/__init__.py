"""Everything that knows botocore lives here; callers see domain types and domain errors only."""
