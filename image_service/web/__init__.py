"""The HTTP face of the service: routes, handlers, schemas, middlewares and the app factory."""
