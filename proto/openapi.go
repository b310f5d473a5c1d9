// Package proto holds sower's API definitions (.proto files), the code buf
// generates from them, and the merged OpenAPI document the server serves at
// /openapi.json. Nothing here is written by hand but the .proto files and this
// file; `make generate` rebuilds the rest.
package proto

import _ "embed"

// OpenAPI is the merged OpenAPI v2 document of every /v1 REST mapping.
//
//go:embed sower.swagger.json
var OpenAPI []byte
