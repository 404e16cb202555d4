// Package console provides the web console of the query service: a single-page
// application embedded in the binary (so a plain go build carries it, with no network
// at run time) and the server-sent event streams that keep it live.
//
// # Assets
//
// Routes serves the files of assets/ under /console/: index.html (the application,
// hash-routed: #/customer/{id}, #/alerts, #/loyalty, #/service-level, #/ops),
// app.js (plain ES modules, no framework), charts.js (the console's chart library: a
// small SVG line and bar chart module of our own, vendored here, with no dependency)
// and styles.css. The pages call the query API on the same origin; a panel whose call
// fails shows an error line and the rest of the page keeps working. The assets are
// served with a strict Content-Security-Policy (same origin only).
//
// # Streams
//
// GET /v1/stream/customers/{id} sends, as `event: timeline`, each entry that lands on
// the customer's timeline after the connection opened, oldest first, with the JSON
// shape of an item of GET /v1/customers/{id}/timeline. The serving timeline version is
// polled every PollInterval (projections.ServingCache follows blue/green switches).
// An entry is new when it was not among the customer's newest entries at the
// previous poll, so an event whose time is older than the newest Window entries is
// not streamed (the page's next load shows it). Timeline entries hold no personal
// data: the timeline read model strips the sealed fields (timeline.withoutPersonal),
// and the stream sends the entries exactly as the query API shows them to a masked
// viewer, never more.
//
// GET /v1/stream/alerts sends, as `event: alert`, each churn alert of the serving
// churn version raised after the connection opened, with the JSON shape of an item of
// GET /v1/churn/alerts (the alert and its priority). Alerts carry ids, scores and
// reasons, never personal data. An alert is new when its id was not seen before and
// its raise time is at most AlertLookback before the newest raise seen; alerts
// raised by replays further in the past are not streamed.
//
// Both streams send a comment line every Heartbeat so proxies keep them open, lift
// the server's write deadline for their connection, and stop when the client goes
// away (the request context ends) or Console.Run returns (the service shuts down). A failed poll is logged
// and retried at the next tick; the stream stays open. Every event carries an id; a
// client that reconnects (EventSource does so by itself) should reload the page's
// data, since events landed while it was away are not replayed.
package console
