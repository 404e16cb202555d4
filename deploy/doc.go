// Package deploy holds no code: it is the module of the tests that check the production
// deployment files beside it, since no Docker engine or Kubernetes cluster is at hand
// where they run.
//
// The tests decode every Kubernetes manifest under k8s/ strictly (unknown kinds and
// unknown or duplicate fields fail) into the k8s.io/api type of its kind, and assert
// what production needs: probes on the admin port, resource requests and limits,
// non-root pods with read-only root filesystems, autoscalers for the gateway and the
// query API, a disruption budget for every multi-replica Deployment, no more projector
// replicas than partitions, Secrets that are templates only, and environment variables
// that the services actually read. They load compose.yaml with the compose-spec
// loader, parse the NATS node configurations with the nats-server's own parser, and
// keep the configuration copies in the ConfigMap equal to deploy/*.json.
package deploy
