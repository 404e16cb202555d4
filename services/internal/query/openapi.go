package query

import (
	_ "embed"
)

// openAPI is the API's contract, written by hand and served as is.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3.0 document of the API.
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

func (s *Server) getOpenAPI(c *call) (*reply, error) {
	if _, err := parseParams(c); err != nil {
		return nil, err
	}
	return &reply{raw: openAPI, contentType: "application/json; charset=utf-8"}, nil
}
