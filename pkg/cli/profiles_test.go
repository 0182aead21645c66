package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestLoginAndProfiles(t *testing.T) {
	f := newFixture(t, false)

	// login checks the key: a wrong one saves nothing.
	code, out, errs := f.run(nil, "login", "--api-url", f.url, "--api-key", "hk_wrong")
	if code != 1 || !strings.Contains(errs, "refused the key") {
		t.Fatalf("login with a wrong key: %d %s %s", code, out, errs)
	}
	if _, err := os.Stat(f.config); !os.IsNotExist(err) {
		t.Fatalf("a refused login wrote %s: %v", f.config, err)
	}

	// The key from stdin, as piped; the file is the user's alone; the key
	// is never printed back in full.
	code, out, errs = f.runIn(nil, f.key+"\n", "login", "--api-url", f.url)
	if code != 0 || !strings.Contains(out, `"default"`) || !strings.Contains(out, maskKey(f.key)) || strings.Contains(out+errs, f.key) {
		t.Fatalf("login: %d %q %q", code, out, errs)
	}
	st, err := os.Stat(f.config)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v, want 0600", f.config, st.Mode().Perm())
		}
		if dst, _ := os.Stat(filepath.Dir(f.config)); dst.Mode().Perm() != 0o700 {
			t.Fatalf("its directory has mode %v, want 0700", dst.Mode().Perm())
		}
	}
	var pf profileFile
	if b, err := os.ReadFile(f.config); err != nil || json.Unmarshal(b, &pf) != nil {
		t.Fatalf("the profile file: %v %s", err, b)
	}
	if pf.Current != "default" || pf.Profiles["default"] != (profile{APIURL: f.url, APIKey: f.key}) {
		t.Fatalf("the profile file holds %+v", pf)
	}

	// The current profile is used without flags or variables.
	ep := f.endpoint()
	code, out, errs = f.run(nil, "endpoints", "list")
	if code != 0 || !strings.Contains(out, ep) {
		t.Fatalf("list with the current profile: %d %s %s", code, out, errs)
	}

	// A second profile, named, with the key from the environment; it
	// points at nothing that answers, so every command must tell which
	// deployment it used.
	const dead = "http://127.0.0.1:1"
	code, out, errs = f.run(map[string]string{"HERALD_API_KEY": "hk_staging"}, "login", "--profile", "staging", "--api-url", dead, "--no-verify", "-o", "json")
	var v profileView
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v.Name != "staging" || !v.Current || v.APIKey != maskKey("hk_staging") {
		t.Fatalf("login --profile staging: %d %s %s", code, out, errs)
	}
	code, out, _ = f.run(nil, "profiles")
	if code != 0 || !strings.Contains(out, "default") || !strings.Contains(out, "*  staging") || strings.Contains(out, f.key) || strings.Contains(out, "hk_staging") {
		t.Fatalf("profiles:\n%s", out)
	}
	var views []profileView
	code, out, _ = f.run(nil, "profiles", "list", "--output", "json")
	if err := json.Unmarshal([]byte(out), &views); code != 0 || err != nil || len(views) != 2 || views[0].Name != "default" || views[0].Current || !views[1].Current {
		t.Fatalf("profiles list --output json: %s", out)
	}
	if strings.Contains(out, f.key) {
		t.Fatal("profiles list printed a key in full")
	}

	// Precedence. The current profile is staging, which does not answer.
	env := map[string]string{"HERALD_API_URL": f.url, "HERALD_API_KEY": f.key}
	list := []string{"endpoints", "list"}
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		ok   bool
	}{
		{"the current profile (staging)", nil, list, false},
		{"the environment over the current profile", env, list, true},
		{"HERALD_PROFILE over the current profile", map[string]string{"HERALD_PROFILE": "default"}, list, true},
		{"--profile over the environment", map[string]string{"HERALD_API_URL": dead, "HERALD_API_KEY": "hk_x"},
			[]string{"endpoints", "list", "--profile", "default"}, true},
		{"--profile before the command", map[string]string{"HERALD_API_URL": dead},
			[]string{"--profile", "default", "endpoints", "list"}, true},
		{"--api-url over --profile", nil, []string{"endpoints", "list", "--profile", "default", "--api-url", dead}, false},
		{"--api-url and --api-key over everything", map[string]string{"HERALD_API_URL": dead, "HERALD_API_KEY": "hk_x", "HERALD_PROFILE": "staging"},
			[]string{"endpoints", "list", "--api-url", f.url, "--api-key", f.key}, true},
		{"the environment's URL with the profile's key", map[string]string{"HERALD_API_URL": f.url, "HERALD_PROFILE": "default"}, list, true},
		{"--api-key over the environment's", map[string]string{"HERALD_API_URL": f.url, "HERALD_API_KEY": "hk_x"},
			[]string{"endpoints", "list", "--api-key", f.key}, true},
	} {
		code, out, errs := f.run(c.env, c.args...)
		if c.ok != (code == 0 && strings.Contains(out, ep)) {
			t.Errorf("%s: %v: exit %d\n%s%s", c.name, c.args, code, out, errs)
		}
		if !c.ok && code != 1 {
			t.Errorf("%s: exit %d, want 1 (%s does not answer)", c.name, code, dead)
		}
	}

	// Unknown profiles are usage errors.
	for _, c := range []struct {
		env  map[string]string
		args []string
		msg  string
	}{
		{nil, []string{"endpoints", "list", "--profile", "prod"}, `no profile "prod"`},
		{map[string]string{"HERALD_PROFILE": "prod"}, []string{"endpoints", "list"}, `no profile "prod" (HERALD_PROFILE)`},
		{nil, []string{"profiles", "use", "prod"}, `no profile "prod"`},
		{nil, []string{"logout", "--profile", "prod"}, `no profile "prod"`},
		{nil, []string{"login", "--profile", "no way", "--api-key", "k", "--no-verify"}, "profile name"},
	} {
		code, out, errs := f.run(c.env, c.args...)
		if code != 2 || !strings.Contains(errs, c.msg) {
			t.Errorf("%v: exit %d %q %q; want 2 mentioning %q", c.args, code, out, errs, c.msg)
		}
	}

	// use switches; logout forgets.
	if code, out, errs := f.run(nil, "profiles", "use", "default"); code != 0 || !strings.Contains(out, `"default"`) {
		t.Fatalf("profiles use: %d %s %s", code, out, errs)
	}
	if code, out, errs := f.run(nil, "endpoints", "list"); code != 0 || !strings.Contains(out, ep) {
		t.Fatalf("list after profiles use default: %d %s %s", code, out, errs)
	}
	if code, out, errs := f.run(nil, "logout"); code != 0 || !strings.Contains(out, `"default"`) {
		t.Fatalf("logout: %d %s %s", code, out, errs)
	}
	code, _, errs = f.run(nil, "endpoints", "list")
	if code != 2 || !strings.Contains(errs, "no API key") {
		t.Fatalf("list with no current profile: %d %s", code, errs)
	}
	if code, _, errs := f.run(nil, "logout"); code != 2 || !strings.Contains(errs, "no current profile") {
		t.Fatalf("logout with no current profile: %d %s", code, errs)
	}
	if code, out, _ := f.run(nil, "logout", "--profile", "staging"); code != 0 || !strings.Contains(out, "staging") {
		t.Fatalf("logout --profile staging: %d %s", code, out)
	}
	if code, out, errs := f.run(nil, "profiles"); code != 0 || out != "" || !strings.Contains(errs, "No profiles") {
		t.Fatalf("profiles, none left: %d %q %q", code, out, errs)
	}

	// A file others can read is used, with a warning.
	if runtime.GOOS != "windows" {
		f.runIn(nil, f.key, "login", "--api-url", f.url)
		if err := os.Chmod(f.config, 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, errs = f.run(nil, "endpoints", "list")
		if code != 0 || !strings.Contains(errs, "chmod 600") {
			t.Fatalf("a readable profile file: %d %s", code, errs)
		}
		f.runIn(nil, f.key, "login", "--api-url", f.url)
		if st, _ := os.Stat(f.config); st.Mode().Perm() != 0o600 {
			t.Fatalf("login left the file at %v", st.Mode().Perm())
		}
	}
}

func TestMaskKey(t *testing.T) {
	for key, want := range map[string]string{
		"":                                    "",
		"hk_abcdefghijklmnopqrstuvwxyz012345": "hk_abcdefg…",
		"short":                               "sh…",
	} {
		if got := maskKey(key); got != want {
			t.Errorf("maskKey(%q) = %q, want %q", key, got, want)
		}
	}
}
