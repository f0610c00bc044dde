"""Ray clusters for the project: checks of `cluster.yaml`, and multi-node Ray on one machine (a head
plus extra nodes, or the autoscaler's fake multi-node provider) for tests and trials."""
