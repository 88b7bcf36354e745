//! Every test that needs no Kubernetes control plane, in one binary: the documentation against
//! the code, property tests of the parsers and validators, the Thalassa client and `check`
//! against the in-process emulator, the template sandbox as the operator binary runs it, and the
//! operator image (tools/build-image.sh) against the Dockerfile.
//! One module per area; each was a binary of its own before.

mod check;
mod docs;
mod image;
mod properties;
mod template_sandbox;
mod thalassa_client;
