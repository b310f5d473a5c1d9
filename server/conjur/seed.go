package conjur

import (
	"net/http"
	"strconv"
	"strings"

	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// formList reads a form field that may repeat and may hold a comma- or
// space-separated list, as Conjur's follower_hostnames does.
func formList(r *http.Request, key string) []string {
	var out []string
	for _, v := range r.PostForm[key] {
		for _, f := range strings.FieldsFunc(v, func(c rune) bool { return c == ',' || c == ' ' }) {
			out = append(out, f)
		}
	}
	return out
}

// writeSeed answers with the archive, as Conjur's seed endpoints do
// (application/octet-stream), plus the seed id and CA pin as headers.
func writeSeed(w http.ResponseWriter, s *sowerv1.IssuedSeed) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Sower-Seed-Id", s.GetRecord().GetId())
	w.Header().Set("X-Sower-Ca-Pin", s.GetCaPin())
	w.Header().Set("X-Sower-Seed-Sealed", map[bool]string{true: "true", false: "false"}[s.GetRecord().GetSealed()])
	// The length up front: the archive goes out in one piece, not chunked.
	w.Header().Set("Content-Length", strconv.Itoa(len(s.GetArchive())))
	_, _ = w.Write(s.GetArchive())
}

func (h *Handler) parseForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		badRequest(w, "the body must be application/x-www-form-urlencoded form fields")
		return false
	}
	return true
}

// followerSeed is POST /configuration/{account}/seed/follower with form
// fields follower_hostnames (Conjur's) and recipient (sower's: the age
// recipient the seed is sealed to).
func (h *Handler) followerSeed(w http.ResponseWriter, r *http.Request) {
	if !h.parseForm(w, r) {
		return
	}
	resp, err := h.seed.IssueFollowerSeed(outgoing(r), &sowerv1.IssueFollowerSeedRequest{
		Account: r.PathValue("account"), Hostnames: formList(r, "follower_hostnames"), Recipient: r.PostForm.Get("recipient"),
	})
	if err != nil {
		writeError(w, err)
		return
	}
	writeSeed(w, resp.GetSeed())
}

// standbySeed is POST /configuration/{account}/seed/standby with form
// fields host (conjur/cluster/<cluster>/<node>), dns_names, ip_addresses
// and recipient.
func (h *Handler) standbySeed(w http.ResponseWriter, r *http.Request) {
	if !h.parseForm(w, r) {
		return
	}
	resp, err := h.seed.IssueStandbySeed(outgoing(r), &sowerv1.IssueStandbySeedRequest{
		Account: r.PathValue("account"), Host: r.PostForm.Get("host"),
		DnsNames: formList(r, "dns_names"), IpAddresses: formList(r, "ip_addresses"), Recipient: r.PostForm.Get("recipient"),
	})
	if err != nil {
		writeError(w, err)
		return
	}
	writeSeed(w, resp.GetSeed())
}
