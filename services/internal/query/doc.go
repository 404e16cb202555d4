// Package query is touchstream's query API: HTTP access to the read models (the
// customer 360 profile, the timeline, search over profiles, loyalty, churn, the
// service level) for dashboards and the call center, and the retention desk's
// commands, which enter the log as events. The OpenAPI 3.0 document, served at GET
// /v1/openapi.json, is the contract; this comment summarises it.
//
// # Endpoints
//
//	GET /v1/customers/{id}           the customer 360 profile (customer360.Get)
//	GET /v1/customers/{id}/timeline  the customer's events, newest first, paged by cursor
//	                                 (?type=a,b&source=x&from=RFC3339&to=RFC3339&cursor=&limit=)
//	GET /v1/customers                search (?phone=&id=&tier=&lifecycle=&region=&segment=
//	                                 &cursor=&limit=); at least one filter is required; id
//	                                 is an exact id or a prefix ending in "*"
//	GET /v1/openapi.json             the OpenAPI document (the only route open to all)
//
// HEAD is answered wherever GET is. Every other method is 405 with Allow: GET, HEAD (on
// a command route, Allow: POST).
// Query parameters are strict: an unknown or repeated parameter is a 400 naming it.
// Lists take limit 1-500 (default 50) and return "next", the cursor of the following
// page, or null on the last page. Cursors are opaque.
//
// # Churn, the retention desk and the service level
//
//	GET  /v1/churn/scores                    customers by churn score, highest first (?tier=
//	                                         &region=&min_score=&max_score=&include_churned=
//	                                         &limit=&cursor=); scores in [0,1], min <= max
//	GET  /v1/churn/customers/{id}            score, reasons and their events, features, state
//	                                         group, current alert, alerts, score history
//	GET  /v1/churn/alerts                    the desk's queue: alerts not closed by priority
//	                                         (score × monthly value), ?limit=&cursor=
//	GET  /v1/churn/alerts/{id}               one alert
//	POST /v1/churn/alerts/{id}/acknowledge   {"staff_id","note"?} -> alert.acknowledged
//	POST /v1/churn/alerts/{id}/actions       {"kind": offer_presented|offer_accepted,
//	                                         "offer_id", "offer_kind", "staff_id"} ->
//	                                         offer.presented / offer.accepted naming the alert
//	POST /v1/churn/alerts/{id}/close         {"outcome": retained|churned, "staff_id",
//	                                         "note"?} -> alert.closed
//	GET  /v1/service-level/answer-rate       hourly answer rate within 20 s and the period's
//	                                         total (?queue=&from=&to=; default the last 24 h,
//	                                         at most 31 days)
//	GET  /v1/service-level/breaches          complaints breached in a period (?from=&to=&limit=)
//	GET  /v1/service-level/summary           the day at a glance (?at=; default now in
//	                                         Config.Location)
//	GET  /v1/customers/{id}/complaints       open complaints, earliest deadline first
//	GET  /v1/churn/distribution              customers per state group and score decile
//	                                         (?tier=&region=), counts only
//
// The lists page with "next_cursor" (opaque; null on the last page). The read models
// are churn (Config.ChurnTarget) and servicelevel (Config.ServiceLevelTarget), both
// followed through projections.serving with FollowServing; a version missing from the
// database answers 404.
//
// The desk's commands do not change a read model: each publishes one event through
// Deps.Commands (without it they answer 503), with the alert's customer as subject,
// Config.CommandSource as source and, when the request carries an Idempotency-Key
// header, that key as event id, so that a retried command is stored once within the
// log's duplicate window ("duplicate": true on the retry). The answer is 202 with the
// event's source and id; the alert changes when the projector folds the event. Bodies
// are strict JSON of at most 4 KiB (413 too_large beyond): an unknown field, a missing
// or malformed one is a 400 naming it, as is a field the event contract refuses. An
// unknown alert is a 404; a closed one a 409 conflict (as the read model knows it: a
// close still being folded is not yet seen). Commands are never cached (Cache-Control:
// no-store). The read model ignores actions on an alert other than the customer's
// current one or on a closed one.
//
// # Freshness
//
// Read models are eventually consistent with the log, so every read says how current
// it is, in the body ("freshness") and in the headers X-Touchstream-Seq and
// X-Touchstream-Lag-Seconds:
//
//   - For one customer (profile, timeline, a 404 for a customer, a search by exact id),
//     the freshness of the customer's partition in the target read: seq is the last
//     stream sequence of that partition the read model has applied; the body reflects
//     at least every event of the partition up to seq (freshness is read before the
//     data, so the data may be slightly newer, never older). lag_seconds and lag_events
//     are the lag last measured by the projector (at lag_measured_at).
//   - For a search over several partitions, a summary over every partition of the
//     target: seq is the LOWEST checkpoint among them and the lags are the HIGHEST, so
//     the headers state a bound that holds for every row of the page. "partitions"
//     says how many were summarised; "partition" is absent.
//
// # Caching
//
// Reads carry a strong ETag (a hash of the exact body bytes, so it changes when the
// data, the freshness or the viewer's access changes) and Cache-Control: no-cache,
// private (personal data, even masked, must not sit in shared caches). If-None-Match
// with a current tag answers 304 with the same headers and no body. Vary:
// Authorization, since what a viewer sees depends on who they are.
//
// # Access
//
// Every route but the OpenAPI document asks who the caller is (Deps.Viewer: the bearer
// token's principal, services/internal/access) and consults the role matrix under its
// route name (access.Needs; New refuses a route the matrix does not list). No valid
// token is a 401 with WWW-Authenticate: Bearer (error="invalid_token" and the reason
// when a token was sent); a token whose roles may not use the route is a 403 naming
// the roles that may (error="insufficient_scope"). The console's own routes (assets,
// streams, its operations pages) authorize themselves.
//
//	GET  /v1/session                   the caller's staff id, roles, access and the routes
//	                                   and capabilities of the matrix they may use
//	POST /v1/stream/tickets            a ticket opening a live stream for one minute
//	                                   (Deps.Tickets; without it 404)
//	GET  /v1/audit/access              the access audit log, newest first (?customer=&staff=
//	                                   &from=&to=&cursor=&limit=): operators and supervisors
//
// The desk's commands record the token's staff member: staff_id in a body is optional,
// and when given must be the token's (403 otherwise), so nobody acts in another's name.
//
// # Personal data
//
// Profiles hold name, phone, id number and address sealed with the customer's data
// key. The API opens them through the injected events.KeySource and, according to the
// caller's roles, returns them in clear (a role with the matrix's personal_clear: the
// supervisor) or masked (everyone else: phone 138****8000, name 张*, id number
// 110101********4578, address 广东省深圳市…). A field whose data key was erased is null
// and the item has "erased": true. Personal data is never logged; neither is the query
// string (a phone search carries the number): logs name the route, the customer id,
// the staff id and the request id only. The search by phone normalises the number
// (customer360.NormalizePhone) and looks up its keyed hash (customer360.PhoneHash).
//
// Every read that returns a customer's personal fields, masked or in clear (the
// profile, and each customer of a search page), is recorded in the access audit log
// (Deps.Audit, services/internal/audit) before it is answered: who, which customer,
// which fields, masked or clear, the route and the request id. A read whose record
// cannot be written is not answered (503 unavailable, Retry-After: fail closed).
// Routes that return no personal field (the timeline's entries hold none, churn,
// loyalty, service levels, aggregates) are not recorded. A 304 or a HEAD is recorded
// like the read it answers.
//
// # Errors
//
// Errors are JSON: {"error": {"code", "message", "parameter"?, "request_id"}}. 400
// invalid_parameter names the parameter; 401 unauthenticated; 403 forbidden; 404
// not_found; 405 method_not_allowed (with Allow: GET, HEAD on reads, POST on
// commands); 409 conflict; 413 too_large; 503 unavailable when the key service cannot
// supply data keys or the access audit log cannot record a read (with Retry-After);
// anything else is a 500
// internal error with a generic message, logged with the request id. Every response
// carries X-Request-Id: the client's, when it sent a sane one, or a new one.
package query
