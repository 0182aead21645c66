// Package deploy holds no code: its tests check what deploy/ and
// docker-compose.yml describe against the binaries, without Docker or a
// cluster. They
//
//   - render deploy/kubernetes (the base, the dev and production overlays,
//     and production with the sender-hpa component) with kustomize and
//     decode every document strictly: Kubernetes kinds with k8s.io/api's
//     types, KEDA's against its CRD's OpenAPI schema (testdata/keda), so an
//     unknown field or kind fails;
//   - load docker-compose.yml as Docker Compose does (compose-go, its
//     schema and interpolation), and run `docker compose config` where it
//     is installed;
//   - check that every HERALD_*, NATS_*, REDIS_* or OTEL_* variable a
//     Herald service is given is one its binary reads
//     (service.Variables), and that NATS gets only what its configuration
//     reads;
//   - start each role as a process, with compose's settings, against a
//     nats-server running deploy/nats/nats.conf and a redis-server, and
//     check that the probes the manifests name answer on the port they
//     name, and that the healthcheck commands compose runs pass.
//
// It is a module of its own so that the Kubernetes and Compose libraries
// stay out of pkg/ and services/. Run: cd deploy && go test ./...
package deploy
