# bash completion for haul, generated from its flags by 'haul completion bash'.
# Use: source <(haul completion bash), or save it as /etc/bash_completion.d/haul
_haul() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    # --flag=value: bash splits at '=' (COMP_WORDBREAKS).
    if [[ $cur == = ]]; then
        cur=
    elif [[ $prev == = && $COMP_CWORD -ge 2 ]]; then
        prev=${COMP_WORDS[COMP_CWORD-2]}
    fi
    case $prev in
        -i|--input|--manifest|--cacert|--netrc-file|--cookies)
            COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null
            return ;;
        -d|--dir)
            COMPREPLY=($(compgen -d -- "$cur")); compopt -o filenames 2>/dev/null
            return ;;
        -j|--jobs|--streams|--per-host|--retries|--timeout|--connect-timeout|--limit-rate|--split|--min-split-size|-H|--header|--user-agent|--progress-interval|--checkpoint|--compress-level|--checksums|-A|--accept|-R|--reject|--host-fail-limit|--dns-server|--dns-concurrency|--proxy|--per-host-rate|--col|--tar-size|--tar-part-size|--s3-endpoint)
            COMPREPLY=()
            return ;;
        --layout)
            COMPREPLY=($(compgen -W "tree flat hash" -- "$cur"))
            return ;;
        --progress)
            COMPREPLY=($(compgen -W "auto bar plain json none" -- "$cur"))
            return ;;
        --compress)
            COMPREPLY=($(compgen -W "gzip zstd" -- "$cur"))
            return ;;
        --shard)
            COMPREPLY=($(compgen -W "auto" -- "$cur"))
            return ;;
        --shard-by)
            COMPREPLY=($(compgen -W "url host" -- "$cur"))
            return ;;
        --http-client)
            COMPREPLY=($(compgen -W "haul net/http" -- "$cur"))
            return ;;
        --input-format)
            COMPREPLY=($(compgen -W "lines csv tsv parquet" -- "$cur"))
            return ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "-i --input -d --dir -j --jobs --streams --per-host --layout --retries --timeout --connect-timeout --limit-rate --split --min-split-size -H --header --user-agent --manifest -q --quiet --progress --progress-interval --force --sha256 --no-sync --checkpoint --named-staging --compress --compress-level --compressed --shard --shard-by --cacert -k --insecure --http1.1 --http-client -N --update --dry-run --checksums -r --recursive -A --accept -R --reject --host-fail-limit --netrc --netrc-file --cookies --dns-server --dns-concurrency --proxy --per-host-rate --robots --input-format --col --tar --tar-size --tar-part-size --s3-endpoint --s3-path-style -h --help -v --version" -- "$cur"))
    elif [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=($(compgen -W "completion man" -- "$cur"))
    elif [[ $COMP_CWORD -eq 2 && ${COMP_WORDS[1]} == completion ]]; then
        COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur"))
    else
        COMPREPLY=() # a URL
    fi
}
complete -F _haul haul
