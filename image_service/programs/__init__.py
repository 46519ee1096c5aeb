"""The programs: every command, the dev stack, the API's supervisor, the worker and the Lambda
handler, and the composition root that assembles the service for them. Nothing below imports
this package."""
