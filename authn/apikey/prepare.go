package apikey

// Prepare generates a new API key for the role and the credential record that
// holds its hash, without storing anything. The caller writes the record in
// a transaction of its own: a policy load stores the credentials of the users
// and hosts it creates in the same transaction as the roles, so that a role
// never exists without its key nor a key without its role. The key is
// returned only here: show it to its owner and forget it.
func (m *Manager) Prepare(roleID string) (key string, cred *Credential, err error) {
	if roleID == "" {
		return "", nil, ErrEmptyRoleID
	}
	key, err = Generate(m.rand)
	if err != nil {
		return "", nil, err
	}
	return key, &Credential{
		RoleID:     roleID,
		Scheme:     SchemeHMACSHA256,
		APIKeyHash: m.h.apiKeyHash(roleID, key),
		Rotated:    m.now().UTC(),
	}, nil
}
