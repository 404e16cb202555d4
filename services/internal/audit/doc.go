// Package audit is the access audit log: who read which customer's personal data,
// when, which fields, in clear or masked, through which route and request. It lives in
// PostgreSQL schema access_audit (table reads, migrations embedded and applied with
// Migrate), outside the event log, and is backed up with it.
//
// # What a record holds
//
// One record per customer per read that returned at least one of the customer's
// personal fields (name, phone, id_number, address), masked or in clear: the staff id
// and roles of the token, the customer id, the field names, whether they were in
// clear, the route's name and the request id. Never the values: a record holds ids
// and names only, so an erasure (which crypto-shreds the customer's data key) leaves
// nothing personal behind, and the records stay as the history of who looked.
//
// # Writing: group commit, fail closed
//
// Log.Record enqueues a read's records and waits until they are committed. One writer
// (Log.Run) takes everything waiting, up to Config.MaxBatch records, and inserts it
// with one statement (a synchronous commit: a record acknowledged is durable), then
// answers every waiting read with the outcome. Under load the batches grow by
// themselves, so the cost per read falls as the rate rises; an idle server writes each
// read's records at once. A read whose records could not be written (the database
// failing or slower than Config.WriteTimeout, more than Config.MaxPending reads
// waiting, the log stopped) gets an error matching ErrUnavailable, and the server must
// not answer it with the data: the log may hold a read that was then not answered
// (the caller gave up), never miss one that was.
//
// # Reading and retention
//
// List pages through the records newest first, filtered by customer, staff member and
// time range, with an opaque cursor. Log.Run deletes the records older than
// Config.Retention (365 days by default, at least one day) when it starts and every
// Config.PruneInterval, in chunks of 10,000 rows.
package audit
