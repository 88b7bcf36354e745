//! Every test that needs no Kubernetes control plane, in one binary: the documentation against
//! the code, property tests of the parsers and validators, the Thalassa client and `check`
//! against the in-process emulator, and the template sandbox as the operator binary runs it.
//! One module per area; each was a binary of its own before.

mod check;
mod docs;
mod properties;
mod template_sandbox;
mod thalassa_client;
