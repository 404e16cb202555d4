package redeem

import (
	_ "embed"
)

// openAPI is the API's contract, written by hand and served as is.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3.0 document of the API.
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

func (s *Server) getOpenAPI(*call) (*reply, error) {
	return &reply{raw: openAPI}, nil
}
