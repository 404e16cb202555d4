// Package access decides who an HTTP request comes from and what they may do: bearer
// tokens carrying a staff id and roles, from a file of static tokens or from an
// OpenID Connect provider's JWT access tokens, and one role matrix that every route of
// the query API, the console's streams and the operations API consults.
//
// # Roles and the matrix
//
// A token carries one or more roles; what it may do is the union of its roles'. The
// matrix (Needs, Principal.Authorize) maps each route, by the name its server gives it
// in metrics and logs, to the roles allowed:
//
//	route                                         agent retention manager operator supervisor
//	customer, search (personal fields masked)       x       x                          x (clear)
//	timeline, complaints, stream_customer           x       x                          x
//	loyalty_member, loyalty_ledger                  x                                  x
//	churn_customer, churn_scores, churn_alerts,             x                          x
//	churn_alert, churn_acknowledge, churn_action,
//	churn_close, stream_alerts
//	churn_distribution                                      x       x                  x
//	loyalty_totals, servicelevel_answer_rate,                       x                  x
//	servicelevel_breaches, servicelevel_summary
//	audit_access                                                            x          x
//	ops_status, ops_dead_letters, ops_dead_letter,                          x
//	ops_redrive, ops_discard, ops_history,
//	ops_erase
//	session, stream_ticket                          x       x       x       x          x
//	personal_clear (a capability, not a route)                                         x
//
// Only the supervisor sees personal fields (name, phone, id number, address) in
// clear; everyone else who may see a profile sees them masked (138****8000). The
// manager sees aggregates only, the operator the operations tools only. A route the
// matrix does not list is refused to everyone (the servers check at construction that
// every route they serve is listed). Health, readiness, /metrics, /debug/pprof and the
// OpenAPI documents ask for no token.
//
// # Tokens
//
// A request sends Authorization: Bearer <token>. Two sources, tried in turn by a Chain:
//
//   - StaticTokens, from a file (deploy/access.json): staff members, each with an id,
//     roles and tokens stored only as SHA-256 hashes, several per member so that a token
//     is rotated without downtime. Loading refuses unknown fields, unknown roles, and a
//     token hash shared by two members, naming the field. Static tokens do not expire:
//     remove a hash to revoke it.
//   - OIDC: JWT access tokens of an identity provider (Keycloak, Azure AD, ...),
//     verified with the standard library against the provider's JSON Web Key Set (a
//     file, a URL, or both; the URL's set is read again every 10 minutes and when an
//     unknown kid arrives, at most every 30 seconds). Accepted: RS256/384/512,
//     PS256/384/512, ES256/384/512, with a kid; refused: alg none, HMAC, critical
//     header extensions, a typ other than JWT or at+jwt. The claims must have iss equal
//     to the issuer, aud equal to or containing the audience, an exp in the future, and
//     nbf and iat not in the future, each with a leeway (1 minute by default). The
//     staff id is a configurable claim (sub by default) and must be an account id; the
//     roles are a configurable claim path (roles, realm_access.roles, ...), an array
//     or a space-separated string, of which names other than touchstream's roles are
//     ignored.
//
// A missing or invalid token is ErrUnauthenticated (401, WWW-Authenticate: Bearer
// with error="invalid_token" and the reason when a token was sent); a valid token
// whose roles may not use the route is a *ForbiddenError matching ErrForbidden (403,
// naming the roles needed, WWW-Authenticate error="insufficient_scope").
//
// # Stream tickets
//
// A browser's EventSource cannot send headers, so the console's live streams
// (/v1/stream/...) take a ticket in the URL instead (Gate.Stream): a statement of the
// principal signed with HMAC-SHA256 by Tickets, issued by an authenticated call (POST
// /v1/stream/tickets), valid to open a stream for one minute and never for an API
// route. A stream opened with it ends when the principal's own token expires. Tickets
// hold the staff id and roles, nothing secret and nothing personal; instances behind
// one address share the signing key.
package access
