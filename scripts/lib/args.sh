# Sourced by the scripts in scripts/ (and third_party/fetch-debs): their argument checks, each
# ending in one line on standard error and exit code 2. Set `me` (the script's name) first.

# usage_error MESSAGE...: "me: MESSAGE" and exit code 2.
usage_error() { echo "$me: $*" >&2; exit 2; }

# show_help: the script's header comment (the lines after #! up to the first line that is not a
# comment), without the leading "# ", on standard output.
show_help() { sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; }

# need_value OPTION COUNT: OPTION, with COUNT arguments left from it on, has a value after it.
need_value() { [ "$2" -ge 2 ] || usage_error "$1 needs a value"; }

# whole OPTION VALUE MIN: VALUE is a whole number of at least MIN (at most nine digits, no leading
# zero: bash arithmetic would read 010 as octal).
whole() {
  [[ $2 =~ ^(0|[1-9][0-9]{0,8})$ ]] && [ "$2" -ge "$3" ] || usage_error "$1 '$2': expected a whole number of at least $3"
}

# no_arguments "$@": a script that takes no arguments; -h or --help prints its header and exits 0.
no_arguments() {
  [ $# -eq 0 ] && return
  case "$1" in -h|--help) show_help; exit 0 ;; esac
  usage_error "takes no arguments (got '$1'); $0 --help says what it does"
}
