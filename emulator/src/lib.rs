//! Thalassa emulator.
