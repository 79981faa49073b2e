//! Long-polling wire conformance (checklist C1..C54, C76 of PROTOCOL.md section 9).

mod support;

#[tokio::test]
async fn placeholder() {}
