//go:build linux

package ansible_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sowerproject/sower/internal/testutil"
)

// TestRenderedFiles renders the role's templates with Ansible's own
// template engine and checks what the provisioning run in this sandbox does
// not reach: the configuration is accepted by the real `sower config print`
// (IPv4 and IPv6 addresses), the systemd unit runs the launcher as the
// node's user, and the launcher refuses to start a node that has neither
// etcd data nor a seed (which would bootstrap a new cluster).
func TestRenderedFiles(t *testing.T) {
	requireAnsible(t)
	bin := testutil.BuildSower(t)
	roleTemplates, err := filepath.Abs(filepath.Join("roles", "sower_standby", "templates"))
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		nodeIP   string
		wantGRPC string
	}{
		"IPv4": {nodeIP: "10.0.0.12", wantGRPC: "10.0.0.12:7443"},
		"IPv6": {nodeIP: "fd00::12", wantGRPC: "[fd00::12]:7443"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			if err := os.Mkdir(out, 0o700); err != nil {
				t.Fatal(err)
			}
			vars := map[string]any{
				"sower_node_name": "standby-1", "sower_cluster": "production", "sower_account": "myorg",
				"sower_node_ip": tc.nodeIP, "sower_grpc_port": 7443, "sower_http_port": 8443,
				"sower_etcd_client_port": 2379, "sower_etcd_peer_port": 2380,
				"sower_log_format": "json", "sower_log_level": "info", "sower_failover_ttl": "15s",
				"sower_bin_dir": filepath.Join(dir, "bin"), "sower_config_dir": out,
				"sower_data_dir": filepath.Join(dir, "data"), "sower_service_name": "sower-standby",
				"sower_ca_pin":   "sha256:" + strings.Repeat("ab", 32),
				"sower_pid_file": filepath.Join(dir, "run", "pid"), "sower_log_file": filepath.Join(dir, "log", "log"),
				"sower_user": "sower", "sower_group": "sower",
			}
			raw, _ := json.Marshal(vars)
			play := `- hosts: localhost
  gather_facts: false
  vars:
    _sower_host: "{{ '[' ~ sower_node_ip ~ ']' if ':' in sower_node_ip else sower_node_ip }}"
  tasks:
    - ansible.builtin.template: {src: "` + roleTemplates + `/sower.yaml.j2", dest: "` + out + `/sower.yaml", mode: "0600"}
    - ansible.builtin.template: {src: "` + roleTemplates + `/sower-standby.service.j2", dest: "` + out + `/sower-standby.service", mode: "0644"}
    - ansible.builtin.template: {src: "` + roleTemplates + `/sower-standby.sh.j2", dest: "` + out + `/sower-standby", mode: "0755"}
`
			pbFile := writeFile(t, filepath.Join(dir, "render.yml"), play, 0o600)
			varsFile := writeFile(t, filepath.Join(dir, "vars.json"), string(raw), 0o600)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "ansible-playbook", "-i", "localhost,", "-c", "local", pbFile, "-e", "@"+varsFile)
			cmd.Env = append(os.Environ(), "ANSIBLE_NOCOLOR=1", "ANSIBLE_LOCAL_TEMP="+filepath.Join(dir, "tmp"),
				"ANSIBLE_REMOTE_TEMP="+filepath.Join(dir, "tmp"), "ANSIBLE_CONFIG="+mustAbs(t, "ansible.cfg"))
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("render the templates: %v\n%s", err, b)
			}

			printed := sower(t, bin, "config", "print", "--config", filepath.Join(out, "sower.yaml"))
			for _, want := range []string{
				`grpc-addr: "` + tc.wantGRPC + `"`, `account: "myorg"`, `cluster: "production"`,
				`name: "standby-1"`, `failover-ttl: "15s"`, `data-dir: "` + filepath.Join(dir, "data") + `"`,
			} {
				if !strings.Contains(printed, want) {
					t.Errorf("sower config print lacks %s:\n%s", want, printed)
				}
			}

			unit := readFile(t, filepath.Join(out, "sower-standby.service"))
			for _, want := range []string{
				"ExecStart=" + filepath.Join(dir, "bin", "sower-standby") + " exec\n",
				"User=sower\n", "Group=sower\n", "ReadWritePaths=" + filepath.Join(dir, "data") + "\n",
				"Restart=on-failure\n", "RestartPreventExitStatus=2\n", "WantedBy=multi-user.target\n",
			} {
				if !strings.Contains(unit, want) {
					t.Errorf("the unit lacks %q:\n%s", want, unit)
				}
			}

			launcher := filepath.Join(out, "sower-standby")
			run := func(arg string) (string, int) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				b, err := exec.CommandContext(ctx, launcher, arg).CombinedOutput()
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					return string(b), ee.ExitCode()
				}
				if err != nil {
					t.Fatalf("%s %s: %v", launcher, arg, err)
				}
				return string(b), 0
			}
			if msg, code := run("exec"); code != 2 || !strings.Contains(msg, "no etcd data and there is no seed") {
				t.Errorf("exec without etcd data or seed: exit %d %q, want exit 2 and a refusal", code, msg)
			}
			if msg, code := run("status"); code != 3 || !strings.Contains(msg, "not running") {
				t.Errorf("status with no pid file: exit %d %q, want exit 3, not running", code, msg)
			}
			if msg, code := run("stop"); code != 0 || !strings.Contains(msg, "not running") {
				t.Errorf("stop with nothing running: exit %d %q, want exit 0, not running", code, msg)
			}
		})
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestExampleInventory checks that inventory.example.yml parses and gives
// every Standby what the role needs, with the API key as a vaulted value.
func TestExampleInventory(t *testing.T) {
	requireAnsible(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ansible-inventory", "-i", "inventory.example.yml", "--list")
	cmd.Env = append(os.Environ(), "ANSIBLE_NOCOLOR=1", "ANSIBLE_CONFIG="+mustAbs(t, "ansible.cfg"),
		"ANSIBLE_LOCAL_TEMP="+t.TempDir())
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("ansible-inventory: %v", err)
	}
	var inv struct {
		Meta struct {
			HostVars map[string]map[string]any `json:"hostvars"`
		} `json:"_meta"`
		Standbys struct {
			Hosts []string `json:"hosts"`
		} `json:"sower_standbys"`
	}
	if err := json.Unmarshal(raw, &inv); err != nil {
		t.Fatalf("ansible-inventory output: %v", err)
	}
	if len(inv.Standbys.Hosts) < 2 {
		t.Fatalf("group sower_standbys has hosts %v, want at least two", inv.Standbys.Hosts)
	}
	for _, h := range inv.Standbys.Hosts {
		hv := inv.Meta.HostVars[h]
		for _, k := range []string{"sower_leader_url", "sower_ca_pin", "sower_binary_src", "sower_node_name", "sower_node_ip", "sower_cluster"} {
			if s, _ := hv[k].(string); s == "" {
				t.Errorf("%s: %s is not set", h, k)
			}
		}
		if v, ok := hv["sower_admin_api_key"].(map[string]any); !ok || v["__ansible_vault"] == nil {
			t.Errorf("%s: sower_admin_api_key is %v, want a vaulted value", h, hv["sower_admin_api_key"])
		}
	}
}
