package pki

import "encoding/base64"

// pemLineLength is the base64 characters per PEM line (RFC 7468).
const pemLineLength = 64

// pemSize is the length of one headerless PEM block of n DER bytes.
func pemSize(typ string, n int) int {
	b64 := base64.StdEncoding.EncodedLen(n)
	lines := (b64 + pemLineLength - 1) / pemLineLength
	return len("-----BEGIN -----\n") + len(typ) + b64 + lines + len("-----END -----\n") + len(typ)
}

// appendPEM appends one headerless PEM block, byte for byte what
// pem.Encode writes, without its per-call encoder and line-breaker
// buffers: certificates and keys are encoded several times per seed.
func appendPEM(dst []byte, typ string, der []byte) []byte {
	dst = append(dst, "-----BEGIN "...)
	dst = append(dst, typ...)
	dst = append(dst, "-----\n"...)
	start := len(dst)
	b64 := base64.StdEncoding.EncodedLen(len(der))
	dst = append(dst, make([]byte, b64)...)
	base64.StdEncoding.Encode(dst[start:], der)
	// Break the encoded text into lines, from the end so that each line
	// moves once.
	lines := (b64 + pemLineLength - 1) / pemLineLength
	dst = append(dst, make([]byte, lines)...)
	for l := lines - 1; l >= 0; l-- {
		from := start + l*pemLineLength
		to := min(from+pemLineLength, start+b64)
		at := from + l
		copy(dst[at:], dst[from:to])
		dst[at+to-from] = '\n'
	}
	dst = append(dst, "-----END "...)
	dst = append(dst, typ...)
	return append(dst, "-----\n"...)
}
