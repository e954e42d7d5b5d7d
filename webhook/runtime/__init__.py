"""The serving process: uvicorn with our TLS context, certificate reload, metrics and JSON logs."""
