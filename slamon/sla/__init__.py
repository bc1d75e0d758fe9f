"""SLA core: calendar periods, maintenance windows, period results, policy digests,
Merkle evidence (pure); the tracker that closes periods; export and customer reports."""
