"""`probe`: what a running API server shows a client on the network, judged against the catalog."""
