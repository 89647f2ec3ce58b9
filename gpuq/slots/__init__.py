"""The GPU slot pool: its rules and database steps (`rules`) and the service that the
API, the sweeper and other services call (`service`)."""
