//! The fleet expiry report and its renderers.
