"""Submissions: storing and reading them (`store`), the scoring profile in use
(`profiles`), changing it and rescoring (`rescoring`), Idempotency-Keys
(`idempotency`), and the use case of submitting (`service`)."""
