// Package k8s holds the Kubernetes manifests of the shop (the *.yaml files
// beside this one) and, in its tests, the checks that keep them honest: every
// document decodes strictly into its Kubernetes type, the objects agree with
// each other (ports, selectors, Secrets, the headless payments Service), and
// every flag in a container's args is one the real binary defines.
//
// It is a module of its own, so that the product's go.mod does not carry
// k8s.io/api; run its tests with
//
//	cd deploy/k8s && go test ./...
package k8s
