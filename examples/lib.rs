//! Runnable examples of the MCP security layers; see the `[[example]]`
//! targets of this package. This library itself is empty.
