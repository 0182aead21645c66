package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/term"

	"github.com/heraldhq/herald/pkg/store"
)

// profile is one saved deployment and key.
type profile struct {
	APIURL string `json:"api_url"`
	APIKey string `json:"api_key"`
}

// profileFile is what herald login writes: named profiles, and the one
// used when no other is named.
type profileFile struct {
	Current  string             `json:"current,omitempty"`
	Profiles map[string]profile `json:"profiles"`
}

// configPath is the profile file: $HERALD_CLI_CONFIG, else
// os.UserConfigDir()/herald/config.json.
func (c *cmd) configPath() (string, error) {
	if p := c.env("HERALD_CLI_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no directory for the profiles (set HERALD_CLI_CONFIG to a file): %w", err)
	}
	return filepath.Join(dir, "herald", "config.json"), nil
}

// loadProfiles reads the profile file; a missing one is empty. A file
// others may read is used, with a warning: it holds API keys.
func (c *cmd) loadProfiles() (profileFile, string, error) {
	pf := profileFile{Profiles: map[string]profile{}}
	path, err := c.configPath()
	if err != nil {
		return pf, "", err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return pf, path, nil
	}
	if err != nil {
		return pf, path, fmt.Errorf("read the profiles: %w", err)
	}
	if err := json.Unmarshal(b, &pf); err != nil {
		return pf, path, fmt.Errorf("read the profiles in %s: %w", path, err)
	}
	if pf.Profiles == nil {
		pf.Profiles = map[string]profile{}
	}
	if st, err := os.Stat(path); err == nil && runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(c.std.Err, "herald: warning: %s holds API keys and others can read it; chmod 600 it\n", path)
	}
	return pf, path, nil
}

// saveProfiles writes the profile file readable by the user alone (0600,
// in a 0700 directory), through a rename so that a crash leaves the old
// file or the new one.
func saveProfiles(path string, pf profileFile) error {
	b, err := json.MarshalIndent(pf, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save the profiles: %w", err)
	}
	f, err := os.CreateTemp(dir, ".config-*.json")
	if err != nil {
		return fmt.Errorf("save the profiles: %w", err)
	}
	defer os.Remove(f.Name()) // after the rename, a no-op
	if err := f.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		f.Close()
		return fmt.Errorf("save the profiles: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("save the profiles: %w", err)
	}
	return nil
}

// validProfileName keeps names to what reads well on a command line.
func validProfileName(name string) error {
	if name == "" || len(name) > 64 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
		return usagef("profile name %q: use 1 to 64 letters, digits, '.', '_' or '-'", name)
	}
	return nil
}

// maskKey shows what may be shown of an API key: the prefix the API's key
// listings show (store.KeyPrefix), never the rest.
func maskKey(key string) string {
	if key == "" {
		return ""
	}
	return store.KeyPrefix(key) + "…"
}

var profileCommands = []command{
	{name: "login", synopsis: "[--profile NAME] [--api-url URL] [--api-key KEY]",
		summary: "Checks an API key against the API and saves the URL and key as a profile\n" +
			"(\"default\" unless --profile names another), which becomes the current\n" +
			"one. Without --api-key or HERALD_API_KEY the key is read from stdin\n" +
			"(asked for, unechoed, on a terminal): a key on the command line stays\n" +
			"in the shell's history.",
		help: "  --no-verify         save without asking the API whether the key works\n" +
			"  -o, --output FMT    table (default) or json\n",
		run: (*cmd).login},
	{name: "logout", synopsis: "[--profile NAME]",
		summary: "Forgets a saved profile: the one --profile names, else the current one.",
		run:     (*cmd).logout},
	{name: "profiles list", synopsis: "[--output table|json]",
		summary: "Lists the saved profiles, the current one marked *, keys masked.",
		run:     (*cmd).listProfiles},
	{name: "profiles use", synopsis: "NAME",
		summary: "Makes a saved profile the current one.",
		run:     (*cmd).useProfile},
}

func (c *cmd) login(args []string) error {
	fs := c.flagSet("login")
	noVerify := fs.Bool("no-verify", false, "save without checking the key")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	asJSON, err := c.asJSON()
	if err != nil {
		return err
	}
	name := c.conn.profile
	if name == "" {
		name = "default"
	}
	if err := validProfileName(name); err != nil {
		return err
	}
	pf, path, err := c.loadProfiles()
	if err != nil {
		return err
	}
	p := profile{APIURL: c.conn.url, APIKey: c.conn.key}
	if p.APIURL == "" {
		p.APIURL = firstOf(c.env("HERALD_API_URL"), pf.Profiles[name].APIURL, defaultAPI)
	}
	if p.APIKey == "" {
		p.APIKey = c.env("HERALD_API_KEY")
	}
	if p.APIKey == "" {
		if p.APIKey, err = c.readKey(p.APIURL); err != nil {
			return err
		}
	}
	if !*noVerify {
		// The cheapest request a tenant key may make.
		if _, err := newClient(p.APIURL, p.APIKey).do(c.ctx, http.MethodGet, "/v1/endpoints?limit=1", nil); err != nil {
			var ae *apiError
			if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
				return fmt.Errorf("%s refused the key (%v); nothing saved", p.APIURL, err)
			}
			return fmt.Errorf("could not check the key (%w); nothing saved (--no-verify saves anyway)", err)
		}
	}
	pf.Profiles[name] = p
	pf.Current = name
	if err := saveProfiles(path, pf); err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(profileView{Name: name, APIURL: p.APIURL, APIKey: maskKey(p.APIKey), Current: true, Path: path})
	}
	fmt.Fprintf(c.std.Out, "Saved profile %q (%s, key %s) in %s; it is the current profile.\n",
		name, p.APIURL, maskKey(p.APIKey), path)
	return nil
}

// firstOf returns the first of vs that is not empty.
func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// readKey reads an API key from stdin: asked for, without echo, on a
// terminal; the first line otherwise (echo $KEY | herald login).
func (c *cmd) readKey(url string) (string, error) {
	if f, ok := c.std.In.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(c.std.Err, "API key for %s: ", url)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.std.Err)
		if err != nil {
			return "", fmt.Errorf("read the key: %w", err)
		}
		return checkKey(string(b))
	}
	if c.std.In == nil {
		return checkKey("")
	}
	line, err := bufio.NewReader(io.LimitReader(c.std.In, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the key from stdin: %w", err)
	}
	return checkKey(line)
}

func checkKey(k string) (string, error) {
	k = strings.TrimSpace(k)
	if k == "" {
		return "", usagef("no API key: pass --api-key, set HERALD_API_KEY, or give it on stdin")
	}
	return k, nil
}

func (c *cmd) logout(args []string) error {
	fs := c.flagSet("logout")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	pf, path, err := c.loadProfiles()
	if err != nil {
		return err
	}
	name := firstOf(c.conn.profile, pf.Current)
	if name == "" {
		return usagef("no current profile: name one with --profile")
	}
	if _, ok := pf.Profiles[name]; !ok {
		return usagef("no profile %q in %s", name, path)
	}
	delete(pf.Profiles, name)
	if pf.Current == name {
		pf.Current = ""
	}
	if err := saveProfiles(path, pf); err != nil {
		return err
	}
	fmt.Fprintf(c.std.Out, "Forgot profile %q.\n", name)
	return nil
}

// profileView is a profile as the CLI shows it: the key masked.
type profileView struct {
	Name    string `json:"name"`
	APIURL  string `json:"api_url"`
	APIKey  string `json:"api_key"`
	Current bool   `json:"current"`
	Path    string `json:"path,omitempty"`
}

func (c *cmd) listProfiles(args []string) error {
	fs := c.flagSet("profiles list")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	asJSON, err := c.asJSON()
	if err != nil {
		return err
	}
	pf, path, err := c.loadProfiles()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(pf.Profiles))
	for n := range pf.Profiles {
		names = append(names, n)
	}
	slices.Sort(names)
	views := make([]profileView, len(names))
	for i, n := range names {
		p := pf.Profiles[n]
		views[i] = profileView{Name: n, APIURL: p.APIURL, APIKey: maskKey(p.APIKey), Current: n == pf.Current}
	}
	if asJSON {
		return c.printJSON(views)
	}
	if len(views) == 0 {
		fmt.Fprintf(c.std.Err, "No profiles in %s; save one with herald login.\n", path)
		return nil
	}
	t := table{head: []string{"", "NAME", "API URL", "API KEY"}, cut: []int{2}}
	for _, v := range views {
		mark := ""
		if v.Current {
			mark = "*"
		}
		t.add(mark, v.Name, v.APIURL, v.APIKey)
	}
	return t.write(c.std.Out)
}

func (c *cmd) useProfile(args []string) error {
	fs := c.flagSet("profiles use")
	pos, err := parseArgs(fs, args, "NAME")
	if err != nil {
		return err
	}
	pf, path, err := c.loadProfiles()
	if err != nil {
		return err
	}
	if _, ok := pf.Profiles[pos[0]]; !ok {
		return usagef("no profile %q in %s", pos[0], path)
	}
	pf.Current = pos[0]
	if err := saveProfiles(path, pf); err != nil {
		return err
	}
	fmt.Fprintf(c.std.Out, "The current profile is %q.\n", pos[0])
	return nil
}
