// Package ops is the logic of touchstream's operations tools, shared by the CLI
// (`touchstream status | dlq | history`) and the console's HTTP API (NewHandler):
//
//   - Status: the log's streams (messages, bytes, first and last sequence), the
//     partitions, every projection target (version) with its checkpoint per partition
//     and its lag in events and seconds (measured now, against the log), dead-letter
//     counts per target and status, and the rebuilds in progress.
//   - Dead letters: list, show (the error, the attempts, the status and the event
//     itself, fetched from the stream by sequence and decoded, personal fields sealed),
//     redrive and discard.
//   - History: a customer's events for audit, through the timeline index and direct
//     gets from the log (never a scan), in stream order, filtered by time and type.
//
// # Guarantees
//
// A redrive applies a parked event by recomputing its customer in the target that
// parked it (projections.Recomputer.Redrive): the customer's later events were folded
// already, so recomputing from the log is what keeps their order. The recompute and
// the status change commit in one transaction; if the projection still cannot apply
// the event, nothing changes but the dead letter's attempts (+1) and error.
//
// A discard is recorded in the log before the dead letter's state changes: a
// deadletter.discarded event (source Source, subject the parked event's customer, with
// the target, stream, sequence, the event's source and id, the reason and the
// operator, no personal data) is published with the events SDK, then the row is
// marked 'discarded'. The event id is derived from (target, stream, seq), so retrying
// a discard that failed half way appends nothing twice. A dead letter without a
// customer (a message that never decoded, or a partition-wide event) cannot be
// discarded by a customer event: fix and rebuild the target instead.
//
// # Personal data
//
// Events are shown with every personal field replaced by "[sealed]". An operator
// allowed to (Operator.Reveal) may ask for them in clear: they are opened through the
// key service; a field whose key was erased is null and the entry says "erased". Every
// reveal is logged with the operator and the customer id, never the values.
//
// # Erasure
//
// Erase erases a customer's personal data through services/internal/erase (the
// customer.erased event in the log, the data key deleted, every read-model version
// purged) and returns its receipt. The operator must be allowed to (Operator.Erase);
// the erasure is recorded under the operator's id.
//
// # HTTP
//
// NewHandler serves, under /v1/ops/ (see the OpenAPI document at
// GET /v1/ops/openapi.json):
//
//	GET  /v1/ops/status
//	GET  /v1/ops/dead-letters?target=&status=&customer=&limit=&before=
//	GET  /v1/ops/dead-letters/{id}
//	POST /v1/ops/dead-letters/{id}/redrive
//	POST /v1/ops/dead-letters/{id}/discard        {"reason": "..."}
//	GET  /v1/ops/customers/{id}/history?from=&to=&type=a,b&reveal=&limit=
//	POST /v1/ops/customers/{id}/erase            {"reason": "customer_request"}
//
// Errors are JSON: {"error": {"code", "message", "parameter"?}}.
package ops
