#!/usr/bin/env bash
# The README's first command: runs the operator's main job on a local default.
#   - builds the operator, the Thalassa emulator and the control-plane tools (first run: minutes),
#   - starts a real local control plane (etcd, kube-apiserver, kube-controller-manager),
#   - starts the Thalassa emulator seeded with config/samples/emulator-seed.yaml,
#   - installs the CRD, runs the operator, applies config/samples into namespace "demo",
#   - waits for every ThalassaSecret to be Ready and shows the synced Secrets,
#   - keeps running until Ctrl-C, then stops everything it started.
#
#   tools/demo.sh               # the operator as a local process
#   tools/demo.sh --in-cluster  # the operator as users run it: its image (tools/build-image.sh)
#                               # on a real kubelet node of the local control plane, installed
#                               # with `helm install` (needs root; tools/node-packages.sh)
# Environment: DEMO_EMULATOR_PORT (default 8787), DEMO_METRICS_PORT (default 8080).
set -euo pipefail

in_cluster=false
case "${1-}" in
  "") ;;
  --in-cluster) in_cluster=true ;;
  *) echo "usage: tools/demo.sh [--in-cluster]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
emulator_port=${DEMO_EMULATOR_PORT:-8787}
metrics_port=${DEMO_METRICS_PORT:-8080}
run=$(mktemp -d "${TMPDIR:-/tmp}/thalassa-demo.XXXXXX")
pids=()

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
cleanup() {
  trap - EXIT INT TERM
  say "stopping (logs kept in $run)"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$emulator_port" "$metrics_port"; do
  port_free "$port" || { echo "port $port is in use; set DEMO_EMULATOR_PORT / DEMO_METRICS_PORT" >&2; exit 1; }
done

say "building the control-plane tools (cached after the first run)"
bin_dir=$(tools/build-tools.sh | tail -n 1)
export PATH="$bin_dir:$PATH"
node_args=()
if $in_cluster; then
  tools/node-packages.sh
  node_missing=$(cargo run -q -p testenv --bin testenv -- node-check 2>&1) ||
    { echo "tools/demo.sh --in-cluster cannot run a node here: $node_missing" >&2; exit 1; }
  node_args=(--node)
  say "building the operator image (tools/build-image.sh; the first release build takes minutes)"
  image_archive=$(tools/build-image.sh | tail -n 1)
fi

say "building the operator, the emulator and testenv"
cargo build -q --bin thalassa-secrets-operator --bin crdgen -p thalassa-secrets-operator
cargo build -q -p thalassa-emulator -p testenv
target=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug

say "starting the local control plane${node_args:+ and a kubelet node}"
TESTENV_BIN_DIR=$bin_dir "$target/testenv" up --dir "$run/control-plane" --exit-with $$ \
  "${node_args[@]}" >"$run/control-plane.log" 2>&1 &
pids+=($!)
until [ -f "$run/control-plane/controlplane.json" ]; do
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$run/control-plane.log" >&2; exit 1; }
  sleep 0.2
done
# shellcheck source=/dev/null
source "$run/control-plane/env"
export KUBECONFIG

# Pods reach the host only on the node's host address (the node has a network of its own).
emulator_host=${TESTENV_NODE_HOST_IP:-127.0.0.1}
api_url="http://$emulator_host:$emulator_port"
say "starting the Thalassa emulator on $emulator_host:$emulator_port"
"$target/thalassa-emulator" --listen "$emulator_host:$emulator_port" --token emulator-token \
  --seed config/samples/emulator-seed.yaml >"$run/emulator.log" 2>&1 &
pids+=($!)
until (exec 3<>"/dev/tcp/$emulator_host/$emulator_port") 2>/dev/null; do sleep 0.2; done
printf 'emulator-token' >"$run/token"

kubectl create namespace thalassa-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
if $in_cluster; then
  say "importing the image into the node and installing the chart (helm install --wait)"
  ctr --address "$TESTENV_NODE_CONTAINERD_SOCKET" --namespace k8s.io images import "$image_archive" >/dev/null
  kubectl create secret generic thalassa-credentials -n thalassa-system \
    --from-file=token="$run/token" >/dev/null
  version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
  helm install thalassa charts/thalassa-secrets-operator --namespace thalassa-system --wait \
    --set image.repository=localhost/thalassa-secrets-operator --set image.tag="$version" \
    --set image.pullPolicy=Never --set thalassa.apiUrl="$api_url" \
    --set "stores.allowedApiUrls[0]=$api_url" --set thalassa.organisation=org-local \
    --set credentials.existingSecret=thalassa-credentials \
    --set "defaultConnection.namespaces[0]=demo" --set defaultRefreshInterval=15s >/dev/null
  kubectl get pods -n thalassa-system -o wide
  operator_log="kubectl logs -n thalassa-system deployment/thalassa-thalassa-secrets-operator"
else
  say "installing the CRD and starting the operator"
  kubectl apply --server-side -f crds/ >/dev/null
  kubectl wait --for=condition=Established crd/thalassasecrets.secrets.thalassa.cloud \
    crd/thalassasecretstores.secrets.thalassa.cloud \
    crd/clusterthalassasecretstores.secrets.thalassa.cloud --timeout=60s >/dev/null
  "$target/thalassa-secrets-operator" \
    --thalassa-url "$api_url" --organisation org-local --region nl-01 \
    --allowed-api-urls "$api_url" \
    --token-file "$run/token" --operator-namespace thalassa-system \
    --default-connection-namespaces demo \
    --default-refresh-interval 15s --metrics-addr "127.0.0.1:$metrics_port" >"$run/operator.log" 2>&1 &
  pids+=($!)
  operator_log="$run/operator.log"
fi

say "applying config/samples into namespace demo"
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n demo -k config/samples
kubectl wait -n demo --for=condition=Ready thalassasecret --all --timeout=120s
kubectl get thalassasecrets -n demo
echo
say "the synced Secret demo/db-creds (decoded):"
kubectl get secret -n demo db-creds -o go-template='{{range $k, $v := .data}}{{$k}}={{$v | base64decode}}{{"\n"}}{{end}}'

say "two teams, two identities: each namespace reads Thalassa through its own store"
# Two Thalassa tokens limited to their team's paths (Thalassa IAM decides, not the operator).
for team in a:db b:api; do
  name=${team%%:*} dir=${team##*:}
  curl -sf -X POST "$api_url/_emulator/tokens" -H 'Content-Type: application/json' \
    -d "{\"token\": \"team-$name-token\", \"access\": {\"readOnly\": true, \"pathGlobs\": [\"/app/production/$dir/*\"]}}" >/dev/null
  kubectl create namespace "team-$name" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl create secret generic thalassa -n "team-$name" --from-literal=token="team-$name-token" \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl apply -n "team-$name" -f - >/dev/null <<YAML
apiVersion: secrets.thalassa.cloud/v1alpha1
kind: ThalassaSecretStore
metadata: {name: thalassa}
spec:
  url: $api_url
  organisation: org-local
  auth: {tokenSecretRef: {name: thalassa}}
---
# Both teams ask for team a's database password.
apiVersion: secrets.thalassa.cloud/v1alpha1
kind: ThalassaSecret
metadata: {name: db-password}
spec:
  storeRef: {name: thalassa}
  data: [{secretKey: password, remoteRef: {path: /app/production/db/password}}]
YAML
done
kubectl wait -n team-a --for=condition=Ready thalassasecret/db-password --timeout=120s
kubectl wait -n team-b --for=jsonpath='{.status.conditions[?(@.type=="Ready")].reason}'=Forbidden \
  thalassasecret/db-password --timeout=120s
kubectl get thalassasecrets -A -l '!nothing' -o custom-columns='NAMESPACE:.metadata.namespace,NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status,REASON:.status.conditions[?(@.type=="Ready")].reason' | grep -E 'NAMESPACE|team-'
kubectl get thalassasecretstores -A

cat <<EOF

team-b was refused team a's path by Thalassa itself: its store's token may read only
/app/production/api/*. No Secret was written in team-b (docs/tenancy.md).

The operator keeps these Secrets in sync until you press Ctrl-C. Try, in another terminal:

  export KUBECONFIG=$KUBECONFIG
  kubectl get thalassasecrets -n demo -w
  kubectl describe thalassasecret -n demo db-password

  # store a new version in the emulator; the Secret follows within the refresh interval (15s)
  curl -s -X POST $api_url/v1/secrets/nl-01/secret/app/production/db/password/versions \\
    -H 'Authorization: Bearer emulator-token' -H 'X-Organisation-Identity: org-local' \\
    -H 'Content-Type: application/json' \\
    -d "{\"secretString\": \"\$(printf new-password | base64)\"}"

  # switch the kms feature gate off: Ready=False, KmsFeatureEnabled=False, the Secret stays as it is
  curl -s -X PUT $api_url/_emulator/feature-gates \\
    -H 'Content-Type: application/json' -d '{"kms": false}'
  # ... and back on
  curl -s -X PUT $api_url/_emulator/feature-gates \\
    -H 'Content-Type: application/json' -d '{"kms": true}'

  # edit or delete the Secret: the operator repairs it at once
  kubectl delete secret -n demo db-password

Logs: $operator_log, $run/emulator.log, $run/control-plane/logs/
EOF
# Until Ctrl-C, or until the control plane (or the local operator) stops.
wait -n "${pids[@]}"
