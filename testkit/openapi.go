package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	legacyrouter "github.com/getkin/kin-openapi/routers/legacy"
)

// OpenAPI is a service's OpenAPI 3 document with a router over it, for checking that
// every answer a test receives is documented.
type OpenAPI struct {
	Doc    *openapi3.T
	router routers.Router
}

// LoadOpenAPI loads a document (the body the service serves), validates it as
// OpenAPI 3 and builds a router over it.
func LoadOpenAPI(t testing.TB, body []byte) *OpenAPI {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(body)
	if err != nil {
		t.Fatalf("load the OpenAPI document: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the document is not valid OpenAPI 3: %v", err)
	}
	router, err := legacyrouter.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &OpenAPI{Doc: doc, router: router}
}

// Conform checks one answer against the document: its status is documented for the
// operation, and its headers and body match. An answer outside every operation
// (unknown path, other method) must be a 404 or 405 with an Error body. kin-openapi
// validates neither 304s nor HEAD answers: for those the status and the required
// headers are checked here, and the body must be empty. reqBody is the request's
// body, if it had one.
func (o *OpenAPI) Conform(t testing.TB, req *http.Request, reqBody []byte, status int, header http.Header, body []byte) {
	t.Helper()
	// Route as a server does: on the escaped path (an escaped slash stays inside its
	// segment) and HEAD as GET.
	probe := req.Clone(context.Background())
	if probe.Method == http.MethodHead {
		probe.Method = http.MethodGet
	}
	if raw := req.URL.EscapedPath(); raw != req.URL.Path {
		probe.URL.Path, probe.URL.RawPath = raw, ""
	}
	probe.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := o.router.FindRoute(probe)
	if err != nil {
		if status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: no operation in the document, and answered %d", req.Method, req.URL.Path, status)
		}
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Errorf("%s %s: body is not JSON: %v", req.Method, req.URL.Path, err)
			return
		}
		if s := o.Doc.Components.Schemas["Error"]; s == nil {
			t.Errorf("the document has no Error schema")
		} else if err := s.Value.VisitJSON(v); err != nil {
			t.Errorf("%s %s: body is not an Error: %v", req.Method, req.URL.Path, err)
		}
		return
	}
	if status == http.StatusNotModified || req.Method == http.MethodHead {
		resp := route.Operation.Responses.Status(status)
		if resp == nil {
			t.Errorf("%s %s: %d is not documented", req.Method, req.URL.RequestURI(), status)
			return
		}
		for name, h := range resp.Value.Headers {
			if h.Value.Required && header.Get(name) == "" {
				t.Errorf("%s %s: %d lacks header %s", req.Method, req.URL.RequestURI(), status, name)
			}
		}
		if len(body) != 0 {
			t.Errorf("%s %s: %d with a body", req.Method, req.URL.RequestURI(), status)
		}
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: probe, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s: answer %d does not conform to the document: %v\nbody: %s", req.Method, req.URL.RequestURI(), status, err, body)
	}
}
