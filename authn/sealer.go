package authn

// Sealer encrypts and authenticates secrets that authn keeps in etcd (signing
// keys, the API-key hashing key) under the cluster's data key. The server
// provides it; authn never sees the data key.
//
// The aad (additional authenticated data) binds a ciphertext to the place it
// is stored: authn passes a string naming the record (for example
// "sower/authn/token/key/<kid>"), so a ciphertext copied to another record
// fails to open.
type Sealer interface {
	Seal(aad string, plaintext []byte) ([]byte, error)
	Open(aad string, ciphertext []byte) ([]byte, error)
}
