package access

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Role is a staff role a token carries.
type Role string

// The roles. A token may carry several; what it may do is the union of theirs.
const (
	// Agent: the call center and the stores. One customer at a time: the customer 360
	// profile, timeline, search, open complaints, and the customer's loyalty account.
	// Personal fields masked.
	Agent Role = "agent"
	// Retention: the retention desk. Churn scores, a customer's churn view, the alert
	// queue and the actions on alerts, and the customer's profile and timeline to act
	// on an alert. Personal fields masked.
	Retention Role = "retention"
	// Manager: aggregates only. Loyalty totals, service levels, churn distributions;
	// no per-customer route.
	Manager Role = "manager"
	// Operator: the operations API (/v1/ops/) and the access audit log. No
	// customer-facing route.
	Operator Role = "operator"
	// Supervisor: everything Agent, Retention and Manager may do, with personal fields
	// in clear, and the access audit log.
	Supervisor Role = "supervisor"
)

// AllRoles lists the roles in the order documents show them.
var AllRoles = []Role{Agent, Retention, Manager, Operator, Supervisor}

// Capabilities that are not routes.
const (
	// PersonalClear: personal fields (name, phone, id number, address) in clear
	// rather than masked, wherever a route shows them.
	PersonalClear = "personal_clear"
)

// matrix is the role matrix, the one table every route consults: for each route (by
// the name the server gives it in metrics and logs) and each capability, the roles
// that may use it. A route that is not here is refused to everyone; a public route
// (health, the OpenAPI documents, /metrics) never asks.
var matrix = map[string][]Role{
	// Query API: one customer.
	"customer":       {Agent, Retention, Supervisor},
	"timeline":       {Agent, Retention, Supervisor},
	"search":         {Agent, Retention, Supervisor},
	"complaints":     {Agent, Retention, Supervisor},
	"loyalty_member": {Agent, Supervisor},
	"loyalty_ledger": {Agent, Supervisor},
	"churn_customer": {Retention, Supervisor},
	// Query API: the retention desk.
	"churn_scores":      {Retention, Supervisor},
	"churn_alerts":      {Retention, Supervisor},
	"churn_alert":       {Retention, Supervisor},
	"churn_acknowledge": {Retention, Supervisor},
	"churn_action":      {Retention, Supervisor},
	"churn_close":       {Retention, Supervisor},
	// Query API: aggregates.
	"loyalty_totals":           {Manager, Supervisor},
	"churn_distribution":       {Manager, Retention, Supervisor},
	"servicelevel_answer_rate": {Manager, Supervisor},
	"servicelevel_breaches":    {Manager, Supervisor},
	"servicelevel_summary":     {Manager, Supervisor},
	// Query API: who am I, and a ticket for the live streams.
	"session":       AllRoles,
	"stream_ticket": AllRoles,
	// The access audit log.
	"audit_access": {Operator, Supervisor},
	// The console's live streams: as the routes they extend.
	"stream_customer": {Agent, Retention, Supervisor},
	"stream_alerts":   {Retention, Supervisor},
	// Operations API (admin listener; status and dead letters also for the console).
	"ops_status":       {Operator},
	"ops_dead_letters": {Operator},
	"ops_dead_letter":  {Operator},
	"ops_redrive":      {Operator},
	"ops_discard":      {Operator},
	"ops_history":      {Operator},
	"ops_erase":        {Operator},
	// Capabilities.
	PersonalClear: {Supervisor},
}

// Routes lists every route and capability of the matrix, sorted.
func Routes() []string {
	out := make([]string, 0, len(matrix))
	for r := range matrix {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// Needs returns the roles that may use a route, and false for a route the matrix
// does not know.
func Needs(route string) ([]Role, bool) {
	roles, ok := matrix[route]
	return slices.Clone(roles), ok
}

// Principal is who a request comes from: a staff member and their roles, as a
// token says.
type Principal struct {
	// StaffID is the staff member's id (an account id, never a name or an e-mail
	// address): 1-64 characters of A-Z a-z 0-9 _ . : -.
	StaffID string
	// Roles are the known roles the token carries, sorted, without duplicates.
	Roles []Role
	// Via says which token authenticated the request, for logs: "static:<token id>"
	// or "oidc:<key id>". It is not secret.
	Via string
	// Expires is when the token stops being valid; zero for a static token.
	Expires time.Time
}

// Has reports whether the principal carries role r.
func (p Principal) Has(r Role) bool { return slices.Contains(p.Roles, r) }

// May reports whether the principal may use a route or capability of the matrix.
func (p Principal) May(route string) bool {
	for _, r := range matrix[route] {
		if p.Has(r) {
			return true
		}
	}
	return false
}

// Allowed returns the routes and capabilities of the matrix the principal may use,
// sorted: what a console shows.
func (p Principal) Allowed() []string {
	var out []string
	for _, r := range Routes() {
		if p.May(r) {
			out = append(out, r)
		}
	}
	return out
}

// Authorize returns nil when the principal may use the route, a *ForbiddenError
// (matching ErrForbidden) naming the roles needed when it may not, and an error for a
// route the matrix does not know (a programming error: answer 500).
func (p Principal) Authorize(route string) error {
	needs, ok := matrix[route]
	if !ok {
		return fmt.Errorf("access: route %q is not in the role matrix", route)
	}
	if p.May(route) {
		return nil
	}
	return &ForbiddenError{Route: route, Needs: slices.Clone(needs), Has: slices.Clone(p.Roles)}
}

// Errors.
var (
	// ErrUnauthenticated: the request carries no token, or one that is not valid.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden: the token is valid but none of its roles may do this.
	ErrForbidden = errors.New("forbidden")
)

// ForbiddenError is a refusal by the role matrix: the roles that would have been
// allowed, and those the token carries.
type ForbiddenError struct {
	Route string
	Needs []Role
	Has   []Role
}

func (e *ForbiddenError) Error() string {
	has := "no role"
	if len(e.Has) > 0 {
		has = "the role " + joinRoles(e.Has, " and ")
	}
	return fmt.Sprintf("this needs the role %s; the token carries %s", joinRoles(e.Needs, " or "), has)
}

// Is makes errors.Is(err, ErrForbidden) true.
func (e *ForbiddenError) Is(target error) bool { return target == ErrForbidden }

func joinRoles(roles []Role, sep string) string {
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = string(r)
	}
	return strings.Join(s, sep)
}

// staffID is the shape of a staff id: the operations tools' operator id.
var staffID = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)

// ValidStaffID reports whether s is a well-formed staff id.
func ValidStaffID(s string) bool { return staffID.MatchString(s) }

// knownRoles keeps the known roles of names, sorted and deduplicated; unknown names
// are dropped (an identity provider may carry roles of other applications).
func knownRoles(names []string) []Role {
	var out []Role
	for _, n := range names {
		r := Role(n)
		if slices.Contains(AllRoles, r) && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}
