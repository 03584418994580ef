#!/bin/sh
# check-docs.sh — every citation and link a reader may follow resolves inside the repository.
#
#   scripts/check-docs.sh        (run by `make check-docs`, and first by `make test`)
#
# Fails, listing each problem as FILE:LINE: message, when
#   (a) a specification citation in the code or the docs — "SPEC 4.2", "SPEC §4.2", a bare
#       "§4.2", "Appendix A.3", "DECISION 17", "DECISIONS 9-13, 23" — names a section or a
#       decision that docs/spec.md does not have. docs/spec.md declares a section by a heading
#       whose text starts with its number ("## 4.2 Category-aware ...", "### A.3 ...") and a
#       decision by a heading or a bold line starting "DECISION 17". A "§" right after the name
#       of another document (STYLE §6, STYLE.md §5, docs/dualcoop.md §2, FIPS 180-4 §6.2,
#       Thm 3.1 and §3.1) cites that document and is not checked;
#   (b) a relative Markdown link in README.md or docs/**/*.md points to a file or folder that
#       does not exist, or its #anchor matches no heading of the target Markdown file
#       (headings compared by their letters and digits only, so GitHub's slug rules need not be
#       reproduced exactly);
#   (c) a path docs/NAME.md (or .png) named in a comment, a string or a doc anywhere above does not
#       exist (e.g. "docs/pretraining.md explains the choices" in a header);
#   (d) a function named as `name()` in docs/spec.md is defined in no .c, .h, .cu or .cuh file
#       (a definition or declaration is a line starting at column 0 that contains "name(", or a
#       function-like #define). A rename in the code shows up here: update docs/spec.md.
# Citations are searched in *.c *.h *.cu *.cuh *.def *.py *.sh *.md and Makefile, outside build
# folders and .git. Exit status 0 when clean, 1 with the list otherwise. POSIX sh, grep, sed, awk.

set -u
LC_ALL=C
export LC_ALL
cd "$(dirname "$0")/.." || exit 1

SPEC=docs/spec.md
SELF=scripts/check-docs.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-docs.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
: >"$tmp/problems"

if [ ! -f "$SPEC" ]; then
    echo "check-docs: $SPEC is missing: every SPEC/DECISION citation in the code refers to it" >&2
    exit 1
fi

# Files searched for citations, and the sources searched for definitions.
find . \( -type d \( -name .git -o -name 'build' -o -name 'build-*' -o -name __pycache__ \) \) \
    -prune -o -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \
    -o -name '*.def' -o -name '*.py' -o -name '*.sh' -o -name '*.md' -o -name Makefile \) \
    -print | sed 's|^\./||' | grep -vxF "$SELF" | sort >"$tmp/cite_files"
grep -E '\.(c|h|cu|cuh)$' "$tmp/cite_files" >"$tmp/src_files"

# ---- what docs/spec.md declares --------------------------------------------------------------
# Sections: heading text starting with a number (4.2) or an appendix label (A, A.3).
sed -n 's/^#\{1,6\}[[:space:]]\{1,\}\(Appendix[[:space:]]\{1,\}\)\{0,1\}\([0-9A-Z][0-9]*\(\.[0-9]\{1,\}\)*\)\([[:space:].:]\|$\).*/\2/p' \
    "$SPEC" | sort -u >"$tmp/sections"
# Decisions: "## DECISION 17 ..." or "**DECISION 17 ...".
sed -n 's/^\(#\{1,6\}[[:space:]]\{1,\}\|\*\*\)DECISION[[:space:]]\{1,\}\([0-9]\{1,\}\).*/\2/p' \
    "$SPEC" | sort -u >"$tmp/decisions"

# ---- (a) citations, and (c) document paths --------------------------------------------------
# One line per citation: FILE<TAB>LINE<TAB>KIND<TAB>KEY<TAB>TEXT, KIND = section, decision or docpath.
xargs awk '
function other_document(prefix) {
    # The text before a "§": does it end with the name of a document other than the spec?
    return prefix ~ /(STYLE|STYLE\.md|[A-Za-z0-9_\/-]+\.md|FIPS [0-9-]+|Thm [0-9.]+ and|RFC ?[0-9]+)[ ]*,?[ ]*\(?$/
}
function emit(kind, key, text) {
    printf "%s\t%d\t%s\t%s\t%s\n", FILENAME, FNR, kind, key, text
}
{
    line = $0
    # "§4.2", "§ 4.2" (with or without SPEC before it)
    rest = line; off = 0
    while (match(rest, /§ ?[0-9]+(\.[0-9]+)*/)) {
        text = substr(rest, RSTART, RLENGTH)
        prefix = substr(line, 1, off + RSTART - 1)
        key = text; sub(/^§ ?/, "", key)
        if (!other_document(prefix)) emit("section", key, text)
        off += RSTART + RLENGTH - 1
        rest = substr(rest, RSTART + RLENGTH)
    }
    # "SPEC 4.2" without the sign
    rest = line
    while (match(rest, /SPEC [0-9]+(\.[0-9]+)*/)) {
        text = substr(rest, RSTART, RLENGTH)
        key = text; sub(/^SPEC /, "", key)
        emit("section", key, text)
        rest = substr(rest, RSTART + RLENGTH)
    }
    # "Appendix A", "Appendix A.3"
    rest = line; off = 0
    while (match(rest, /Appendix [A-Z](\.[0-9]+)*/)) {
        text = substr(rest, RSTART, RLENGTH)
        prefix = substr(line, 1, off + RSTART - 1)
        key = text; sub(/^Appendix /, "", key)
        if (!other_document(prefix)) emit("section", key, text)
        off += RSTART + RLENGTH - 1
        rest = substr(rest, RSTART + RLENGTH)
    }
    # "docs/pretraining.md": a document named by its path
    rest = line
    while (match(rest, /docs\/[A-Za-z0-9_.\/-]+\.(md|png)/)) {
        emit("docpath", substr(rest, RSTART, RLENGTH), substr(rest, RSTART, RLENGTH))
        rest = substr(rest, RSTART + RLENGTH)
    }
    # "DECISION 17", "DECISIONS 9-13, 23", "DECISION 6, 21", "DECISIONS 16, 17 and 28"
    rest = line
    while (match(rest, /DECISIONS? [0-9]+(( ?[-,] ?| and | ?– ?)[0-9]+)*/)) {
        text = substr(rest, RSTART, RLENGTH)
        after = substr(rest, RSTART + RLENGTH, 1)
        rest = substr(rest, RSTART + RLENGTH)
        list = text; sub(/^DECISIONS? /, "", list)
        # "DECISION 4, 0.03 at 50 %": a number followed by a decimal point is not in the list
        if (after == ".") sub(/( ?[-,] ?| and | ?– ?)[0-9]+$/, "", list)
        gsub(/ and /, ",", list); gsub(/ /, "", list); gsub(/–/, "-", list)
        n = split(list, parts, ",")
        for (i = 1; i <= n; i++) {
            if (split(parts[i], r, "-") == 2 && r[1] + 0 <= r[2] + 0 && r[2] - r[1] < 100) {
                for (k = r[1] + 0; k <= r[2] + 0; k++) emit("decision", k, text)
            } else if (parts[i] != "") emit("decision", parts[i] + 0, text)
        }
    }
}' <"$tmp/cite_files" >"$tmp/citations"

awk -F '\t' -v sections="$tmp/sections" -v decisions="$tmp/decisions" -v spec="$SPEC" '
BEGIN {
    while ((getline s < sections) > 0) have["section", s] = 1
    while ((getline d < decisions) > 0) have["decision", d] = 1
}
($3 == "section" || $3 == "decision") && !have[$3, $4] {
    if ($3 == "section")
        printf "%s:%s: cites \"%s\", but %s has no section %s (no heading starting \"%s\")\n", \
            $1, $2, $5, spec, $4, $4
    else
        printf "%s:%s: cites \"%s\", but %s has no DECISION %s (no heading or bold line \"DECISION %s\")\n", \
            $1, $2, $5, spec, $4, $4
}' "$tmp/citations" >>"$tmp/problems"

# ---- (b) relative links in README.md and docs/ --------------------------------------------------
{ echo README.md; find docs -type f -name '*.md' | sort; } >"$tmp/md_files"
# FILE<TAB>LINE<TAB>TARGET for every inline link or image outside fenced code blocks.
xargs awk '
FNR == 1 { fence = 0 }
/^[ ]*(```|~~~)/ { fence = !fence; next }
fence { next }
{
    rest = $0
    gsub(/`[^`]*`/, "", rest)   # code spans are not links
    while (match(rest, /\]\([^)]*\)/)) {
        t = substr(rest, RSTART + 2, RLENGTH - 3)
        rest = substr(rest, RSTART + RLENGTH)
        sub(/^[ ]*</, "", t); sub(/>[ ]*$/, "", t)
        sub(/[ ]+"[^"]*"[ ]*$/, "", t)       # an optional title
        if (t == "" || t ~ /^[a-zA-Z][a-zA-Z0-9+.-]*:/) continue   # http:, https:, mailto:
        printf "%s\t%d\t%s\n", FILENAME, FNR, t
    }
}' <"$tmp/md_files" >"$tmp/links"

# Heading keys of a Markdown file: each heading (and <a id/name>) reduced to [a-z0-9].
heading_keys() {
    awk '
    /^[ ]*(```|~~~)/ { fence = !fence; next }
    fence { next }
    /^#+[ ]/ { h = $0; sub(/^#+[ ]+/, "", h); print h }
    {
        rest = $0
        while (match(rest, /<a (id|name)="[^"]*"/)) {
            a = substr(rest, RSTART, RLENGTH); sub(/^<a (id|name)="/, "", a); sub(/"$/, "", a)
            print a
            rest = substr(rest, RSTART + RLENGTH)
        }
    }' "$1" | tr 'A-Z' 'a-z' | sed 's/[^a-z0-9]//g'
}

while IFS="$(printf '\t')" read -r file line target; do
    path=${target%%#*}
    anchor=
    case $target in *'#'*) anchor=${target#*#} ;; esac
    path=${path%%\?*}
    if [ -z "$path" ]; then
        resolved=$file
    else
        case $path in
            /*) resolved=.$path ;;
            *) resolved=$(dirname "$file")/$path ;;
        esac
    fi
    if [ ! -e "$resolved" ]; then
        echo "$file:$line: link to \"$target\": $resolved does not exist" >>"$tmp/problems"
        continue
    fi
    if [ -n "$anchor" ] && [ -f "$resolved" ]; then
        case $resolved in
            *.md)
                key=$(printf '%s' "$anchor" | tr 'A-Z' 'a-z' | sed 's/[^a-z0-9]//g')
                if ! heading_keys "$resolved" | grep -qxF "$key"; then
                    echo "$file:$line: link to \"$target\": $resolved has no heading matching #$anchor" \
                        >>"$tmp/problems"
                fi ;;
        esac
    fi
done <"$tmp/links"

# ---- (c) documents named by path --------------------------------------------------------------
awk -F '\t' '$3 == "docpath"' "$tmp/citations" | while IFS="$(printf '\t')" read -r file line kind path text; do
    [ -e "$path" ] || echo "$file:$line: names \"$path\", which does not exist" >>"$tmp/problems"
done

# ---- (d) functions named in docs/spec.md ----------------------------------------------------------
# Every identifier followed by "(" on a line that starts at column 0 with a letter, "_" or "#define".
xargs awk '
/^[A-Za-z_]/ || /^#[ \t]*define[ \t]/ {
    rest = $0
    sub(/\/\*.*$/, "", rest); sub(/\/\/.*$/, "", rest)
    while (match(rest, /[A-Za-z_][A-Za-z0-9_]*[ \t]*\(/)) {
        name = substr(rest, RSTART, RLENGTH); sub(/[ \t]*\($/, "", name)
        print name
        rest = substr(rest, RSTART + RLENGTH)
    }
}' <"$tmp/src_files" | sort -u >"$tmp/defined"

grep -noE '`[A-Za-z_][A-Za-z0-9_]*\(\)`' "$SPEC" | while IFS=: read -r line name; do
    name=${name#\`}
    name=${name%\(\)\`}
    if ! grep -qxF "$name" "$tmp/defined"; then
        echo "$SPEC:$line: \`$name()\` is defined in no .c/.h/.cu file (renamed or removed?" \
            "name the function that now computes this)" >>"$tmp/problems"
    fi
done

# ---- verdict ---------------------------------------------------------------------------------
n=$(wc -l <"$tmp/problems" | tr -d ' ')
if [ "$n" -gt 0 ]; then
    cat "$tmp/problems" >&2
    echo "check-docs: $n problem(s): citations of $SPEC without their section or decision, dead links" \
        "or document paths, or functions it names that the code no longer defines (see the header of $SELF)" >&2
    exit 1
fi
ncite=$(wc -l <"$tmp/citations" | tr -d ' ')
nlink=$(wc -l <"$tmp/links" | tr -d ' ')
nfun=$(grep -oE '`[A-Za-z_][A-Za-z0-9_]*\(\)`' "$SPEC" | wc -l | tr -d ' ')
echo "check-docs: OK ($ncite citations and document paths, $nlink relative links, $nfun function names resolve)"
