// Command thalassa-health reads Kubernetes objects as a JSON stream on stdin and prints, for
// each one, a JSON line with what kstatus (sigs.k8s.io/cli-utils) and an Argo CD Lua health
// script make of it:
//
//	{"name":...,"kstatus":"InProgress","kstatusMessage":...,"health":"Progressing","healthMessage":...}
//
// kstatusError / healthError are added when that evaluation failed (kstatus is then "Unknown";
// health is "Unknown" with the error as message, as Argo CD reports it). A `kind: *List` object
// with `items` (kubectl get -o json) is expanded into its items.
//
//	thalassa-health [--lua config/argocd/health.lua] [--open-libs] < objects.json
//
// Exit status: 0 ok; 1 unreadable input; 2 bad usage or a script that does not compile;
// 3 every line was printed but some evaluation failed.
//
// The Lua side mirrors Argo CD's runner as read in argoproj/argo-cd at commit
// 37ee0097cf851bc2dd7665fc081bbce61a7e836e (master, 2026-08-22, after v3.5.1; util/lua/lua.go
// and util/lua/oslib_safe.go, gitops-engine/pkg/health/health.go), which pins
// github.com/yuin/gopher-lua v1.1.2 and layeh.com/gopher-json v0.0.0-20190114024228-97fed8db8427,
// the versions this module uses too. Argo CD's own util/lua package is not imported: it pulls in
// the Application API types and gRPC clients, and Argo CD's go.mod needs replace directives
// (k8s.io/*, ./gitops-engine) that do not apply to a module depending on it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	luajson "layeh.com/gopher-json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Name           string `json:"name"`
	KStatus        string `json:"kstatus"`
	KStatusMessage string `json:"kstatusMessage"`
	Health         string `json:"health"`
	HealthMessage  string `json:"healthMessage"`
	KStatusError   string `json:"kstatusError,omitempty"`
	HealthError    string `json:"healthError,omitempty"`
}

func main() {
	luaPath := flag.String("lua", "config/argocd/health.lua", "Argo CD health script to run")
	openLibs := flag.Bool("open-libs", false,
		"open the Lua standard libraries, as resource.customizations.useOpenLibs.<group>_<kind>: true does")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "thalassa-health: objects are read from stdin; no arguments expected")
		os.Exit(2)
	}
	script, err := os.ReadFile(*luaPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "thalassa-health:", err)
		os.Exit(2)
	}
	proto, err := compile(string(script))
	if err != nil {
		fmt.Fprintf(os.Stderr, "thalassa-health: %s: %v\n", *luaPath, err)
		os.Exit(2)
	}
	vm := healthVM{proto: proto, openLibs: *openLibs}

	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)
	in := json.NewDecoder(os.Stdin)
	failed := false
	for {
		var raw json.RawMessage
		if err := in.Decode(&raw); err == io.EOF {
			break
		} else if err != nil {
			fmt.Fprintln(os.Stderr, "thalassa-health: reading stdin:", err)
			os.Exit(1)
		}
		objs, err := objects(raw)
		if err != nil {
			fmt.Fprintln(os.Stderr, "thalassa-health: reading stdin:", err)
			os.Exit(1)
		}
		for _, u := range objs {
			r := evaluate(vm, u)
			failed = failed || r.KStatusError != "" || r.HealthError != ""
			if err := out.Encode(r); err != nil {
				fmt.Fprintln(os.Stderr, "thalassa-health:", err)
				os.Exit(1)
			}
		}
	}
	if failed {
		os.Exit(3)
	}
}

// objects decodes one JSON value the way client-go's unstructured decoding does (integers as
// int64, other numbers as float64: what Argo CD's live objects hold) and expands lists.
func objects(raw json.RawMessage) ([]*unstructured.Unstructured, error) {
	var m map[string]any
	if err := utiljson.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("expected a JSON object, got null")
	}
	u := &unstructured.Unstructured{Object: m}
	items, isList := m["items"].([]any)
	if !isList || !strings.HasSuffix(u.GetKind(), "List") {
		return []*unstructured.Unstructured{u}, nil
	}
	var out []*unstructured.Unstructured
	for i, item := range items {
		im, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s item %d is not an object", u.GetKind(), i)
		}
		out = append(out, &unstructured.Unstructured{Object: im})
	}
	return out, nil
}

func evaluate(vm healthVM, u *unstructured.Unstructured) result {
	r := result{Name: u.GetName()}
	// kstatus.Compute may normalise the object it reads; give each evaluator its own copy.
	if ks, err := status.Compute(u.DeepCopy()); err != nil {
		r.KStatus, r.KStatusError = status.UnknownStatus.String(), err.Error()
	} else {
		r.KStatus, r.KStatusMessage = ks.Status.String(), ks.Message
	}
	hs, err := vm.resourceHealth(u.DeepCopy())
	if err != nil {
		r.HealthError = err.Error()
	}
	r.Health, r.HealthMessage = hs.Status, hs.Message
	return r
}

// ---- Argo CD's Lua health runner ----

const (
	healthUnknown     = "Unknown"
	healthProgressing = "Progressing"
	// gitops-engine pkg/sync/common.HookFinalizer.
	hookFinalizer = "argocd.argoproj.io/hook-finalizer"
)

// healthStatus mirrors gitops-engine pkg/health.HealthStatus, JSON tags included: Argo CD fills
// it from the script's table with encoding/json.
type healthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

// validHealth mirrors util/lua isValidHealthStatusCode (the HealthStatusCode constants).
var validHealth = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true, "Healthy": true, "Degraded": true, "Missing": true,
}

type healthVM struct {
	proto    *lua.FunctionProto
	openLibs bool // ResourceOverride.UseOpenLibs; false for an argocd-cm script unless set
}

// compile mirrors util/lua loadCompiledFunction: Argo CD compiles a script once with
// LState.LoadString and runs the cached proto in a fresh LState for every object. The
// difference: a syntax error is reported once here (exit 2), where Argo CD reports it as
// health Unknown on every object.
func compile(script string) (*lua.FunctionProto, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	fn, err := l.LoadString(script)
	if err != nil {
		return nil, err
	}
	return fn.Proto, nil
}

// resourceHealth mirrors gitops-engine health.GetResourceHealth with an override present
// (util/lua ResourceHealthOverrides.GetResourceHealth): an object pending deletion is
// Progressing without running the script; a script error becomes Unknown with the error text.
func (vm healthVM) resourceHealth(u *unstructured.Unstructured) (healthStatus, error) {
	if u.GetDeletionTimestamp() != nil && !hasHookFinalizer(u) {
		return healthStatus{Status: healthProgressing, Message: "Pending deletion"}, nil
	}
	hs, err := vm.executeHealthLua(u)
	if err != nil {
		return healthStatus{Status: healthUnknown, Message: err.Error()}, err
	}
	return *hs, nil
}

// hasHookFinalizer mirrors gitops-engine pkg/sync/hook.HasHookFinalizer.
func hasHookFinalizer(u *unstructured.Unstructured) bool {
	for _, f := range u.GetFinalizers() {
		if f == hookFinalizer {
			return true
		}
	}
	return false
}

// executeHealthLua mirrors util/lua VM.ExecuteHealthLua: the script's last return value must be
// a table (or nil, which means an empty status); the table goes through gopher-json and
// encoding/json into a HealthStatus, and a status that is not a known code becomes Unknown.
func (vm healthVM) executeHealthLua(u *unstructured.Unstructured) (*healthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !vm.openLibs})
	defer l.Close()
	if err := vm.runLua(l, u.Object); err != nil {
		return nil, err
	}
	ret := l.Get(-1)
	switch ret.Type() {
	case lua.LTNil:
		return &healthStatus{}, nil
	case lua.LTTable:
	default:
		return nil, fmt.Errorf("expect table output from Lua script, not %s", ret.Type().String())
	}
	b, err := luajson.Encode(ret)
	if err != nil {
		return nil, err
	}
	hs := &healthStatus{}
	if err := json.Unmarshal(b, hs); err != nil {
		// Argo CD means to catch an empty table (which gopher-json encodes as []) here, but its
		// errors.As matches any *json.UnmarshalTypeError, so e.g. `status = 1` also lands here:
		// an empty status, returned without the validity check below.
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return &healthStatus{}, nil
		}
		return nil, err
	}
	if !validHealth[hs.Status] {
		return &healthStatus{Status: healthUnknown, Message: "Lua returned an invalid health status"}, nil
	}
	return hs, nil
}

// runLua mirrors util/lua VM.runLuaWithResourceActionParameters (without action parameters).
func (vm healthVM) runLua(l *lua.LState, obj map[string]any) error {
	// Opened whether or not the standard libraries are: package, base, table and the safe os.
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			panic(err)
		}
	}
	// `local os = require("os")` gets the safe subset.
	l.PreloadModule(lua.OsLibName, safeOsLoader)

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)

	l.SetGlobal("actionParams", l.CreateTable(0, 0)) // no action parameters for a health check
	l.SetGlobal("obj", decodeValue(l, obj))

	l.Push(l.NewFunctionFromProto(vm.proto))
	err := l.PCall(0, lua.MultRet, nil)
	// Argo CD drops the Lua stack trace of a runtime error, since the message reaches users.
	var apiErr *lua.ApiError
	if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
		apiErr.StackTrace = ""
		err = apiErr
	}
	return err
}

// decodeValue mirrors util/lua decodeValue: Go values of an unstructured object to Lua values.
// Maps become hash tables, slices array tables, every number an LNumber, json.Number a string,
// and nil (or any other type) nil, so a null field reads as absent.
func decodeValue(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(decodeValue(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for k, item := range v {
			t.RawSetH(lua.LString(k), decodeValue(l, item))
		}
		return t
	}
	return lua.LNil
}

// ---- util/lua/oslib_safe.go: os.time and os.date only ----

var safeOsFuncs = map[string]lua.LGFunction{"time": osTime, "date": osDate}

// openSafeOs mirrors util/lua OpenSafeOs, which registers the functions under the *table*
// library's name. "table" is loaded by then, so RegisterModule leaves it alone: in Argo CD the
// global `os` stays nil unless the standard libraries are open, and only require("os") works.
func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.TabLibName, safeOsFuncs))
	return 1
}

// safeOsLoader mirrors util/lua SafeOsLoader (the preloaded "os" module).
func safeOsLoader(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), safeOsFuncs))
	return 1
}

// osTime mirrors util/lua osTime: now, or the local time of a {year, month, day, hour=12, min=0,
// sec=0} table.
func osTime(l *lua.LState) int {
	if l.GetTop() == 0 {
		l.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}
	tb := l.CheckTable(1)
	field := func(name string, def int) int {
		if n, ok := tb.RawGetString(name).(lua.LNumber); ok {
			return int(n)
		}
		return def
	}
	t := time.Date(field("year", -1), time.Month(field("month", -1)), field("day", -1),
		field("hour", 12), field("min", 0), field("sec", 0), 0, time.Local)
	l.Push(lua.LNumber(t.Unix()))
	return 1
}

// osDate mirrors util/lua osDate, quirks included: a leading "!" selects UTC only when no time
// argument follows, and "*t" gives yday 0 and isdst false.
func osDate(l *lua.LState) int {
	t, format := time.Now(), "%c"
	if l.GetTop() >= 1 {
		format = l.CheckString(1)
		if strings.HasPrefix(format, "!") {
			t, format = time.Now().UTC(), strings.TrimLeft(format, "!")
		}
		if l.GetTop() >= 2 {
			t = time.Unix(l.CheckInt64(2), 0)
		}
		if strings.HasPrefix(format, "*t") {
			tb := l.NewTable()
			for k, v := range map[string]int{
				"year": t.Year(), "month": int(t.Month()), "day": t.Day(), "hour": t.Hour(),
				"min": t.Minute(), "sec": t.Second(), "wday": int(t.Weekday()) + 1, "yday": 0,
			} {
				tb.RawSetString(k, lua.LNumber(v))
			}
			tb.RawSetString("isdst", lua.LFalse)
			l.Push(tb)
			return 1
		}
	}
	l.Push(lua.LString(strftime(t, format)))
	return 1
}

// strftimeLayouts is util/lua cDateFlagToGo (its %a layout "mon" prints literally "mon").
var strftimeLayouts = map[byte]string{
	'a': "mon", 'A': "Monday", 'b': "Jan", 'B': "January", 'c': "02 Jan 06 15:04 MST", 'd': "02",
	'F': "2006-01-02", 'H': "15", 'I': "03", 'm': "01", 'M': "04", 'p': "PM", 'P': "pm", 'S': "05",
	'x': "15/04/05", 'X': "15:04:05", 'y': "06", 'Y': "2006", 'z': "-0700", 'Z': "MST",
}

// strftime behaves as util/lua strftime: %% is a percent sign, %w the weekday number, an unknown
// flag and a trailing % are kept as written.
func strftime(t time.Time, format string) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i == len(format)-1 {
			b.WriteByte(c)
			continue
		}
		i++
		c = format[i]
		layout, known := strftimeLayouts[c]
		switch {
		case c == '%':
			b.WriteByte('%')
		case known:
			b.WriteString(t.Format(layout))
		case c == 'w':
			b.WriteString(strconv.Itoa(int(t.Weekday())))
		default:
			b.WriteByte('%')
			b.WriteByte(c)
		}
	}
	return b.String()
}
