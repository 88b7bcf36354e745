// The pod sandbox ("pause") process of the test node's sandbox image. registry.k8s.io cannot
// be reached from the project machine, so testenv builds the sandbox image from this static
// binary. Built by tools/build-tools.sh as pause.
module thalassa-operator-tools/pause

go 1.26.0
